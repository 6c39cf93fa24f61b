"""Video decode benchmark: clips/s of model input from 60 s 720p videos cut into 10 s clips.

Three ways to the same tensors, each timed end to end (open the file → preprocessed clips):

- vidsearch: `probe_timeline`, then `read_clips` with the probe's timeline (one demux pass, plan,
  decode only the needed groups of pictures, convert only sampled frames);
- rescan: the same, but `read_clips` demuxes the file again for its own timeline (how it was before
  the probe handed its timeline over: the ratio of the two is what demuxing once saves);
- naive: decode every frame to RGB with PyAV (same decoder threads, same colour conversion), keep
  them all, then index the sampled frames; naive-fast: the same with FFmpeg's default, faster RGB
  conversion (what a quick script does; slightly different colours);
- decord: `VideoReader.get_batch` of the sampled frame numbers (its own seeking), if installed
  (`pip install 'vidsearch[bench]'`).

The sampled frames and the preprocessing after decoding are the same for all three (the rules in
`vidsearch.video`). The videos are generated once (moving texture, encoder defaults otherwise) and
kept under benchmarks/results/media/.

    python benchmarks/decode.py                   # both presets, 3 repeats: about 5 minutes on 2 cores
    python benchmarks/decode.py --presets viclip --repeats 1

Prints a table and writes benchmarks/results/decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidsearch.video import (
    ClipSpec,
    Preprocess,
    ReadOptions,
    get_preprocess_preset,
    probe,
    probe_timeline,
    read_clips,
    segment,
)
from vidsearch.video.plan import clip_frames
from vidsearch.video.source import Deadline, open_input
from vidsearch.video.timeline import scan_timeline
from vidsearch.video.transform import frame_to_rgb, normalise_clip, prepare_frame

RESULTS = Path(__file__).parent / "results"
SECONDS, FPS, WIDTH, HEIGHT, CLIP_S = 60, 30, 1280, 720, 10.0
CODECS = {
    "h264": ("libx264", ".mp4", {"preset": "veryfast"}),
    "vp9": ("libvpx-vp9", ".webm", {"deadline": "realtime", "cpu-used": "8", "b": "2M"}),
}


def make_video(name: str) -> Path:
    """A 60 s 720p video of a moving, noisy texture (so that it has a realistic bitrate)."""
    codec, suffix, options = CODECS[name]
    path = RESULTS / "media" / f"bench-{name}-{WIDTH}x{HEIGHT}-{SECONDS}s{suffix}"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = ((xx // 40 + yy // 40) % 2 * 80 + 60).astype(np.uint8)
    noise = rng.integers(0, 30, (HEIGHT, WIDTH), dtype=np.uint8)
    partial = path.with_name(f"partial-{path.name}")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = options
        for number in range(SECONDS * FPS):
            grey = np.roll(base, (number * 4) % WIDTH, axis=1) + np.roll(noise, number % 7, axis=0)
            rgb = np.stack([grey, np.roll(grey, number, axis=0), np.full_like(grey, (number * 2) % 256)], -1)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = number
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path


def frame_numbers(path: Path, spec: Preprocess) -> list[list[int]]:
    """The sampled frame numbers of every clip, by vidsearch's rules (shared by all three methods)."""
    deadline = Deadline(str(path), 600)
    with open_input(path, deadline) as container:
        timeline = scan_timeline(container, container.streams.video[0], deadline)
    clips = segment(probe(path), ClipSpec(length_s=CLIP_S))
    return [numbers for _, numbers in clip_frames(timeline, clips, spec.sampling)]


def run_vidsearch(path: Path, spec: Preprocess, _: list[list[int]]) -> int:
    probed = probe_timeline(path)
    clips = segment(probed.info, ClipSpec(length_s=CLIP_S))
    return sum(1 for _ in read_clips(path, clips, spec, ReadOptions(), timeline=probed.timeline))


def run_rescan(path: Path, spec: Preprocess, _: list[list[int]]) -> int:
    clips = segment(probe(path), ClipSpec(length_s=CLIP_S))
    return sum(1 for _ in read_clips(path, clips, spec, ReadOptions()))


def run_naive(path: Path, spec: Preprocess, numbers: list[list[int]]) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"  # the same decoder threads as vidsearch
        frames = [frame_to_rgb(frame) for frame in container.decode(stream)]
    clips = [normalise_clip([prepare_frame(frames[n], spec) for n in clip], spec) for clip in numbers]
    return len(clips)


def run_naive_fast(path: Path, spec: Preprocess, numbers: list[list[int]]) -> int:
    """As `run_naive`, with FFmpeg's default (faster, less exact) colour conversion, as a quick script
    would do: not the same tensors, but the fastest naive baseline."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    clips = [normalise_clip([prepare_frame(frames[n], spec) for n in clip], spec) for clip in numbers]
    return len(clips)


def run_decord(path: Path, spec: Preprocess, numbers: list[list[int]]) -> int:
    import decord  # the bench extra

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    count = 0
    for clip in numbers:
        frames = reader.get_batch(clip).asnumpy()
        normalise_clip([prepare_frame(np.ascontiguousarray(f), spec) for f in frames], spec)
        count += 1
    return count


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def timed(method: Callable[[Path, Preprocess, list[list[int]]], int], path: Path, spec: Preprocess,
          numbers: list[list[int]]) -> float:
    started = time.perf_counter()
    clips = method(path, spec, numbers)
    seconds = time.perf_counter() - started
    if clips != len(numbers):
        raise RuntimeError(f"made {clips} clips instead of {len(numbers)}")
    return seconds


def print_table(rows: list[dict[str, Any]]) -> None:
    """Adds the speed-ups over the baselines that were run (naive, naive-fast, rescan) to each row and
    prints them."""
    baselines = [b for b in ("naive", "naive-fast", "rescan") if any(r["method"] == b for r in rows)]
    print(f"{'codec':6} {'preset':12} {'method':10} {'clips':>5} {'median s':>9} {'best s':>7} {'clips/s':>8}"
          + "".join(f" {'vs ' + b:>13}" for b in baselines))
    for r in rows:
        head = f"{r['codec']:6} {r['preset']:12} {r['method']:10} {r['clips']:5d}"
        if "error" in r:
            print(f"{head}  failed: {r['error']}")
            continue
        ratios = ""
        for baseline in baselines:
            other = next(n for n in rows if (n["codec"], n["preset"], n["method"]) ==
                         (r["codec"], r["preset"], baseline))
            if "median_s" in other:
                r[f"speedup_vs_{baseline.replace('-', '_')}"] = other["median_s"] / r["median_s"]
                ratios += f" {other['median_s'] / r['median_s']:12.3f}×"
        print(f"{head} {r['median_s']:9.2f} {r['best_s']:7.2f} {r['clips_per_s']:8.2f}{ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="viclip,videomae_v2")
    parser.add_argument("--codecs", default="h264,vp9")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="vidsearch,rescan,naive,naive-fast,decord",
                        help="a subset, e.g. vidsearch,rescan (the naive ones hold every frame in memory)")
    args = parser.parse_args()
    methods: dict[str, Callable[[Path, Preprocess, list[list[int]]], int]] = {
        "vidsearch": run_vidsearch, "rescan": run_rescan, "naive": run_naive, "naive-fast": run_naive_fast}
    if _decord_available():
        methods["decord"] = run_decord
    elif "decord" in args.methods:
        print("decord is not installed (pip install 'vidsearch[bench]'); skipping it")
    methods = {name: method for name, method in methods.items() if name in args.methods.split(",")}
    rows = []
    for codec in args.codecs.split(","):
        path = make_video(codec)
        info = probe(path)
        for preset in args.presets.split(","):
            spec = get_preprocess_preset(preset)
            numbers = frame_numbers(path, spec)
            # Interleave the methods within each repeat round, so that load from other processes
            # on a shared machine falls on all of them alike.
            results: dict[str, list[float]] = {name: [] for name in methods}
            failures: dict[str, str] = {}
            clips = len(numbers)
            for _ in range(args.repeats):
                for name, method in methods.items():
                    if name not in failures:
                        try:
                            results[name].append(timed(method, path, spec, numbers))
                        except Exception as exc:  # a third-party decoder failing is a result too
                            failures[name] = f"{type(exc).__name__}: {str(exc).splitlines()[-1][:200]}"
            for name, seconds in results.items():
                row: dict[str, Any] = {"codec": codec, "preset": preset, "method": name, "clips": clips,
                       "video": {"file": path.name, "frames": info.frame_count, "bytes": path.stat().st_size}}
                if name in failures:
                    row["error"] = failures[name]
                else:
                    row.update(median_s=statistics.median(seconds), best_s=min(seconds),
                               clips_per_s=clips / statistics.median(seconds), runs_s=seconds)
                rows.append(row)
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "decode.json"
    out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "versions": {"av": av.__version__, "numpy": np.__version__},
        "setup": {"seconds": SECONDS, "fps": FPS, "size": [WIDTH, HEIGHT], "clip_s": CLIP_S,
                  "repeats": args.repeats},
        "rows": rows,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
