"""The preprocessing spec: everything that decides the tensor a clip becomes, as data.

One `Preprocess` drives both implementations (`transform.py` on the CPU, `dali.py` as a DALI
pipeline), is stored beside every exported model (`to_dict`, JSON), and its `digest` is recorded
with every embedding, so that vectors made with different preprocessing are never mixed.

The steps, in order, for every sampled frame: decode and convert to RGB uint8 (BT.601 whatever the
stream's colour tags say, as DALI does; chroma interpolated bilinearly); rotate as the
container says; resize on uint8 (rounded back to uint8), either straight to `size` ("direct") or the
short side to `short_side` then a centre crop of `size` ("short_side_crop"); reorder channels; then
x / 255, minus `mean`, divided by `std`, in float32, laid out as `layout` (T = frames, C = channels).
"""

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from vidsearch.errors import ConfigError
from vidsearch.formats.imagenet import IMAGENET_MEAN, IMAGENET_STD
from vidsearch.video.sampling import SamplingRule

ResizeMode = Literal["direct", "short_side_crop"]
Interpolation = Literal["bilinear", "bicubic"]
ChannelOrder = Literal["RGB", "BGR"]
Layout = Literal["TCHW", "CTHW"]

SPEC_VERSION = 1


@dataclass(frozen=True)
class Preprocess:
    """How a clip's sampled frames become one float32 tensor (see the module docstring); `mean` and
    `std` are given in R, G, B order whatever the output channel order."""

    sampling: SamplingRule
    size: tuple[int, int] = (224, 224)  # output (height, width)
    resize: ResizeMode = "direct"
    short_side: int | None = None  # only for short_side_crop
    interpolation: Interpolation = "bilinear"
    antialias: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channels: ChannelOrder = "RGB"
    layout: Layout = "TCHW"

    def __post_init__(self) -> None:
        try:  # canonical types, so that equal specs serialise (and hash) equally
            object.__setattr__(self, "size", tuple(int(v) for v in self.size))
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
            object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        except (TypeError, ValueError):
            raise ConfigError(f"preprocess: size, mean and std must be numbers; got {self.size}, "
                              f"{self.mean}, {self.std}") from None
        for name, allowed in (("resize", ResizeMode), ("interpolation", Interpolation),
                              ("channels", ChannelOrder), ("layout", Layout)):
            if getattr(self, name) not in get_args(allowed):
                raise ConfigError(f"preprocess: {name} must be one of {get_args(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"preprocess: size must be (height, width) ≥ 1, got {self.size}")
        if self.resize == "direct" and self.short_side is not None:
            raise ConfigError("preprocess: resize 'direct' takes no short_side")
        if self.resize == "short_side_crop" and (self.short_side is None or self.short_side < max(self.size)):
            raise ConfigError(f"preprocess: short_side_crop needs short_side ≥ the crop size {self.size}, "
                              f"got {self.short_side}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"preprocess: mean and std need 3 values, std > 0; got {self.mean}, {self.std}")

    @property
    def frames(self) -> int:
        return self.sampling.frames

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """Shape of one clip's tensor, following `layout`."""
        h, w = self.size
        return (self.frames, 3, h, w) if self.layout == "TCHW" else (3, self.frames, h, w)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict that `from_dict` turns back into an equal spec."""
        data = asdict(self)
        data["size"] = list(self.size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return {"version": SPEC_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocess":
        """Parse a dict from `to_dict` (or a preset file); unknown or missing keys are errors."""
        body = dict(data)
        version = body.pop("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ConfigError(f"preprocess: spec version {version} is not supported (this is {SPEC_VERSION})")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - names)
        if unknown:
            raise ConfigError(f"preprocess: unknown keys {unknown}; expected some of {sorted(names)}")
        try:
            sampling = SamplingRule(**body.pop("sampling"))
            for key in ("size", "mean", "std"):
                if key in body:
                    body[key] = tuple(body[key])
            return cls(sampling=sampling, **body)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"preprocess: malformed spec ({exc})") from None

    def digest(self) -> str:
        """A short stable hash of the spec (16 hex digits); equal specs give equal digests."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def list_preprocess_presets() -> list[str]:
    """Names of the preprocessing presets that ship with vidsearch."""
    folder = resources.files("vidsearch.video") / "presets"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def get_preprocess_preset(name_or_path: str | Path) -> Preprocess:
    """A shipped preset by name (`viclip`, `videomae_v2`), or a user's JSON file of the same shape."""
    path = Path(name_or_path)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"preprocess: no preset file {path}")
        text = path.read_text()
    else:
        known = list_preprocess_presets()
        if str(name_or_path) not in known:
            raise ConfigError(f"preprocess: unknown preset {str(name_or_path)!r}; known: {known}")
        text = (resources.files("vidsearch.video") / "presets" / f"{name_or_path}.json").read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"preprocess: preset {name_or_path} is not valid JSON ({exc})") from None
    return Preprocess.from_dict(data)
