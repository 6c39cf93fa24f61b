"""The CPU implementation of `Preprocess`: decoded frame → RGB uint8 → resized uint8 → float tensor.

Both steps follow DALI's arithmetic, so the CPU and DALI paths agree to ±1 grey level on the same
decoded YUV (tests/video/test_dali.py):

- colour: FFmpeg's swscale with bilinear, full-resolution chroma interpolation and accurate rounding
  (bit-exact, so every CPU gives the same bytes), BT.601 whatever the stream's colour tags say —
  which is what DALI's decoder does;
- resize: float bilinear (or bicubic) with half-pixel centres, no sub-pixel ROI adjustment, rounded
  back to uint8, as DALI's `fn.resize` with `subpixel_scale=False` (bilinear without antialiasing, the
  presets' choice, is computed from the four source pixels of each output pixel only).
"""

import math

import av
import numpy as np
from av.video.reformatter import Interpolation
from numpy.typing import NDArray

from vidsearch.video.preprocess import Preprocess

_SWS_FLAGS = (
    Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND
    | Interpolation.BITEXACT
)


def frame_to_rgb(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """A decoded frame as RGB uint8 [H, W, 3], converted as the module docstring says."""
    rgb = frame.reformat(format="rgb24", src_colorspace="ITU601", interpolation=_SWS_FLAGS, threads=1)
    return np.asarray(rgb.to_ndarray(), dtype=np.uint8)


def rotate(rgb: NDArray[np.uint8], rotation: int) -> NDArray[np.uint8]:
    """Turn a frame counter-clockwise by `rotation` degrees (a multiple of 90), as a player shows it."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def resized_size(height: int, width: int, spec: Preprocess) -> tuple[int, int]:
    """(height, width) a frame is resized to before any crop: the short side to `short_side`, the
    long side in proportion, rounded to the nearest pixel."""
    if spec.resize == "direct":
        return spec.size
    short = spec.short_side or max(spec.size)
    scale = short / min(height, width)
    if height <= width:
        return short, max(1, math.floor(width * scale + 0.5))
    return max(1, math.floor(height * scale + 0.5)), short


def crop_offsets(height: int, width: int, spec: Preprocess) -> tuple[int, int]:
    """Top-left corner of the centre crop in a resized frame (halves rounded up)."""
    crop_h, crop_w = spec.size
    return math.floor((height - crop_h) / 2 + 0.5), math.floor((width - crop_w) / 2 + 0.5)


def _linear_taps(size_in: int, size_out: int) -> tuple[NDArray[np.intp], NDArray[np.intp],
                                                         NDArray[np.float32], NDArray[np.float32]]:
    """Source indices and weights of bilinear resampling with half-pixel centres (as torch and DALI)."""
    scale = np.float32(size_in / size_out)
    source = np.maximum((np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5),
                        np.float32(0.0))
    first = np.minimum(np.floor(source).astype(np.intp), size_in - 1)
    second = np.minimum(first + 1, size_in - 1)
    weight = np.clip(source - first, 0.0, 1.0).astype(np.float32)
    return first, second, np.float32(1.0) - weight, weight


def _bilinear(rgb: NDArray[np.uint8], height: int, width: int) -> NDArray[np.uint8]:
    """Bilinear resize without antialiasing, reading only the four source pixels of each output pixel:
    the same numbers as torch's float kernel at a fraction of the cost for large frames."""
    y0, y1, top, bottom = _linear_taps(rgb.shape[0], height)
    x0, x1, left, right = _linear_taps(rgb.shape[1], width)
    left, right = left[None, :, None], right[None, :, None]

    def corner(rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float32]:
        return rgb[np.ix_(rows, cols)].astype(np.float32)

    upper = left * corner(y0, x0) + right * corner(y0, x1)
    lower = left * corner(y1, x0) + right * corner(y1, x1)
    out = top[:, None, None] * upper + bottom[:, None, None] * lower
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _resize(rgb: NDArray[np.uint8], height: int, width: int, spec: Preprocess) -> NDArray[np.uint8]:
    if spec.interpolation == "bilinear" and not spec.antialias:
        return _bilinear(rgb, height, width)
    # torch only here: the presets' bilinear path runs without it (inside the Triton server, which has none)
    import torch
    import torch.nn.functional as F

    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    image = F.interpolate(image, size=(height, width), mode=spec.interpolation, align_corners=False,
                          antialias=spec.antialias)
    return image[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def prepare_frame(rgb: NDArray[np.uint8], spec: Preprocess) -> NDArray[np.uint8]:
    """Resize (and crop) one RGB uint8 frame [H, W, 3] as `spec` says; the result stays uint8."""
    height, width = rgb.shape[:2]
    out_h, out_w = resized_size(height, width, spec)
    if (out_h, out_w) != (height, width):
        rgb = _resize(rgb, out_h, out_w, spec)
    if spec.resize == "short_side_crop":
        top, left = crop_offsets(out_h, out_w, spec)
        rgb = rgb[top : top + spec.size[0], left : left + spec.size[1]]
    if spec.channels == "BGR":
        rgb = rgb[..., ::-1]
    return np.ascontiguousarray(rgb)


def normalise_clip(frames: list[NDArray[np.uint8]], spec: Preprocess) -> NDArray[np.float32]:
    """Stack prepared frames [h, w, 3] into one float32 clip tensor laid out as `spec.layout`."""
    clip = np.stack(frames).astype(np.float32) / np.float32(255.0)  # T, H, W, C
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    if spec.channels == "BGR":
        mean, std = mean[::-1], std[::-1]
    clip = (clip - mean) / std
    order = (0, 3, 1, 2) if spec.layout == "TCHW" else (3, 0, 1, 2)
    return np.ascontiguousarray(clip.transpose(order))
