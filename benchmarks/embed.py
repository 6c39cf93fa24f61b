"""Batch embedding benchmark: the whole job (`vidsearch embed`, local engine) against the model alone.

For each model it measures, on the same machine in one run:

- model-only: clips/s of `Runtime.embed_video` on pre-decoded tensors (batches of the model's
  maximum, the same runtime settings as the job);
- decode-only: clips/s of `read_clips` in this one process (PyAV, the model's preprocessing);
- whole job: clips/s of `run_embed` over the corpus, from listing the files to the last shard commit
  (decoding processes, queues, batching across videos, Parquet, the ledger), and hours of video
  embedded per CPU-hour (wall time × the cores the machine has).

Models: the shipped demo ViCLIP (64², decoding dominates) and the ViCLIP-B/16 architecture with random
weights (224², the model dominates; speed does not depend on the weights). Target for ViCLIP-B/16:
whole job ≥ 0.9 × model-only, i.e. decoding hidden behind inference.

    nice -n 10 .venv/bin/python benchmarks/embed.py                    # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/embed.py --models demo --videos 6       # a quick look

The corpus (H.264, x264 veryfast, a moving noisy texture) and the exported models are kept under
benchmarks/results/; prints a table and writes benchmarks/results/embed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from vidsearch.jobs import EmbedJob, list_inputs, run_embed
from vidsearch.runtime import RuntimeConfig, open_runtime
from vidsearch.video import ClipSpec, ReadOptions, probe, read_clips, segment

RESULTS = Path(__file__).parent / "results"
TARGET = 0.9


def make_corpus(count: int, seconds: int, width: int, height: int, fps: int = 30) -> Path:
    """`count` H.264 videos of a moving noisy texture (a realistic bitrate), made once."""
    folder = RESULTS / "media" / f"embed-{count}x{seconds}s-{width}x{height}"
    if folder.is_dir() and len(list(folder.glob("*.mp4"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8)
    for number in range(count):
        path = folder / f"video-{number:03d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "veryfast"}
            for frame_number in range(seconds * fps):
                shift = (frame_number * 3 + number * 37) % height
                picture = np.ascontiguousarray(texture[shift : shift + height, shift : shift + width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return folder


def demo_repository(console: Console) -> Path:
    from vidsearch.demo.run import export_demo_model

    repository = RESULTS / "models" / "demo" / "repository"
    repository.mkdir(parents=True, exist_ok=True)
    folder = Path(__file__).parents[1] / "vidsearch" / "training" / "demo_model"
    export_demo_model(folder, repository, console)
    return repository


def b16_repository(console: Console) -> Path:
    """ViCLIP-B/16 with random weights, exported as `vidsearch export` does (once)."""
    from vidsearch.export import ExportConfig, export_model
    from vidsearch.models import create_model

    folder = RESULTS / "models" / "viclip-b16"
    repository = folder / "repository"
    if not (repository / "viclip_vision").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint = folder / "random.pth"
        torch.manual_seed(0)
        torch.save({"model": create_model("viclip-b16").state_dict()}, checkpoint)
        started = time.monotonic()
        export_model(ExportConfig("viclip-b16", checkpoint, repository, max_batch=8))
        console.print(f"exported ViCLIP-B/16 in {time.monotonic() - started:.0f} s")
    return repository


def decode_only(corpus: Path, repository: Path, clip_s: float) -> tuple[float, list[np.ndarray]]:
    """Clips/s of decoding + preprocessing in this process, and the tensors (for the model-only run)."""
    runtime = open_runtime(RuntimeConfig(model_repository=repository))
    vision = runtime.facts.vision
    runtime.close()
    assert vision is not None
    assert vision.preprocess is not None
    tensors = []
    started = time.perf_counter()
    for item in list_inputs(str(corpus)):
        clips = segment(probe(item.path), ClipSpec(clip_s))
        tensors += [t for _, t in read_clips(item.path, clips, vision.preprocess, ReadOptions())]
    return len(tensors) / (time.perf_counter() - started), tensors


def model_only(repository: Path, tensors: list[np.ndarray], clips: int) -> float:
    """Clips/s of the vision tower on pre-decoded clips, in batches of its maximum (after one warm-up)."""
    runtime = open_runtime(RuntimeConfig(model_repository=repository))
    try:
        vision = runtime.facts.vision
        assert vision is not None
        batch = np.stack([tensors[i % len(tensors)] for i in range(vision.batch)])
        runtime.embed_video(batch[:1])
        done, started = 0, time.perf_counter()
        while done < clips:
            runtime.embed_video(batch)
            done += len(batch)
        return done / (time.perf_counter() - started)
    finally:
        runtime.close()


def whole_job(corpus: Path, repository: Path, clip_s: float, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        job = EmbedJob(input=str(corpus), out=Path(out) / "out", clips=ClipSpec(clip_s), workers=workers,
                       runtime=RuntimeConfig(model_repository=repository), progress=False)
        summary = run_embed(job)
    assert summary.exit_code == 0
    return {"clips": summary.clips, "seconds": summary.seconds, "clips_per_s": summary.clips_per_s}


def measure(name: str, repository: Path, corpus: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per number of decoding processes: the demo model, bound by decoding, also gets one per core."""
    video_s = sum(probe(item.path).duration_s for item in list_inputs(str(corpus)))
    decode_rate, tensors = decode_only(corpus, repository, args.clip_s)
    model_rate = model_only(repository, tensors, max(len(tensors) // 2, 8))
    rows = []
    for workers in sorted({args.workers, os.cpu_count() or 1} if name == "demo" else {args.workers}):
        job = whole_job(corpus, repository, args.clip_s, workers)
        cpu_hours = job["seconds"] * (os.cpu_count() or 1) / 3600
        rows.append({
            "model": name, "workers": workers, "clips": job["clips"], "video_s": video_s,
            "decode_clips_per_s": decode_rate, "model_clips_per_s": model_rate,
            "decode_share": model_rate / (model_rate + decode_rate),  # of one clip's decode + model time
            "job_clips_per_s": job["clips_per_s"], "job_s": job["seconds"],
            "job_vs_model": job["clips_per_s"] / model_rate,
            "job_vs_decode": job["clips_per_s"] / decode_rate,
            "video_hours_per_cpu_hour": video_s / 3600 / cpu_hours,
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["demo", "viclip-b16"], choices=["demo", "viclip-b16"])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the corpus")
    parser.add_argument("--clip-s", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes of the job")
    parser.add_argument("--b16-videos", type=int, default=16, help="videos for ViCLIP-B/16 (slow model)")
    args = parser.parse_args()
    console = Console(width=160)
    width, height = (int(v) for v in args.size.split("x"))
    rows = []
    for name in args.models:
        count = args.videos if name == "demo" else args.b16_videos
        corpus = make_corpus(count, args.seconds, width, height)
        repository = demo_repository(console) if name == "demo" else b16_repository(console)
        rows += measure(name, repository, corpus, args)
    table = Table("model", "clips", "decode clips/s (1 proc.)", "model clips/s", "decode share",
                  "job workers", "job clips/s", "job / model", "job / decode", "video h / CPU-h",
                  title=f"vidsearch embed, {os.cpu_count()} cores")
    for row in rows:
        table.add_row(row["model"], str(row["clips"]), f"{row['decode_clips_per_s']:.2f}",
                      f"{row['model_clips_per_s']:.2f}", f"{row['decode_share']:.0%}", str(row["workers"]),
                      f"{row['job_clips_per_s']:.2f}", f"{row['job_vs_model']:.2f}",
                      f"{row['job_vs_decode']:.2f}", f"{row['video_hours_per_cpu_hour']:.2f}")
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()}
    report = {"machine": machine, "args": vars(args), "rows": rows, "target": TARGET}
    (RESULTS / "embed.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
