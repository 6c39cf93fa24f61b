"""The GPU report: what vidsearch's GPU path does on the GPU it runs on, side by side in one run.

Sections (each one `ok`, `skipped` with the reason, or `error` with the message; one failing section
never stops the others):

- env: GPU, driver, CUDA, PyTorch, DALI, FAISS and PyNvVideoCodec versions;
- decode_parity: `dali_read_clips(device="gpu")` against `read_clips` (PyAV) per clip, in grey levels
  (mean and worst absolute difference), and whether every GPU frame is closest to the PyAV frame of the
  same position (no frame out of order), on H.264 with B-frames, HEVC, VP9 and AV1 where encodable;
- decode_batch: decode-only clips/s of the batch path (each video fed once) on 720p H.264 1-s clips
  with 1, 2, 4 and 8 DALI sessions, against the all-frames baseline on the same files in the same run
  (DALI and PyNvVideoCodec, 1-8 sessions): video frames/s over baseline frames/s (target ≥ 0.7);
- embed_job: the whole `vidsearch embed --decoder dali` against min(decode-only, model-only) on the
  same files (target ≥ 0.8), with the demo model on the embedded runtime;
- models: PyTorch fp16 vision clips/s (ViCLIP-B/16, L/14, random weights) at batch 32, text latency at
  batch 1, eager and in a CUDA graph;
- faiss: raw FAISS GPU `IVF4096,SQfp16` on clustered vectors (recall@10 against exact search, queries/s
  at batch 1 and 32) and `FaissClipIndex` placed on the same GPU (queries/s at batch 1 through `search`,
  at batch 32 through `search_batch`, and their ratios to raw FAISS: targets ≥ 0.7 and ≥ 0.5);
- faiss_cagra: `GpuIndexCagra` with L2 on the unit vectors (the inner-product ranking; CAGRA with inner
  product gave recall 0.016 here), recall@10 and queries/s at batch 1 and 32;
- search_1m, search_10m: `benchmarks/serving.py --device gpu` (text tower, index, whole Search over gRPC at
  concurrency 1 and 32) at 1M and at 10M clips (10M last: it is the first to go when time runs short);
- torch_runtime: the torch runtime's towers (fp16, padded batches): one text query's p50 through the
  runtime (numpy in and out) eager and replayed from a CUDA graph, ViCLIP-B/16 and L/14; vision clips/s
  at the best padded batch (CUDA graphs);
- torch_parity: ViCLIP-B/16 exported by `vidsearch export`, the torch runtime on the GPU (fp16, bf16)
  against the embedded runtime (ONNX Runtime, CPU) of the same export: the lowest cosine per row;
- training: 50 steps of the demo training recipe on the GPU (bf16 autocast) and on the CPU (fp32):
  steps/s and the loss after the same steps.

    python benchmarks/gpu.py                 # on a GPU machine: within --budget-s (300 s), priority first
    python benchmarks/gpu.py --full          # every section, no budget (10M search: many minutes)
    python benchmarks/gpu.py --smoke         # tiny sizes; without a GPU, the decode sections run DALI's
                                             # CPU decoder (VP9) so their code itself is checked

Prints a table and writes benchmarks/results/gpu.json (or --out). `make gpu-check` runs it from the
offline bundle (tools/gpu/check.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

RESULTS = Path(__file__).parent / "results"
Section = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    seconds: int  # length of each test video
    width: int
    height: int
    vectors: int  # FAISS database size
    model_batch: int
    repeats: int


FULL = Sizes(seconds=8, width=1280, height=720, vectors=1_000_000, model_batch=32, repeats=20)
SMOKE = Sizes(seconds=2, width=320, height=240, vectors=5_000, model_batch=2, repeats=2)
ENCODERS = {  # codec: (encoder candidates, suffix, options); the first encoder PyAV has is used
    "h264": (["libx264"], ".mp4", {"preset": "veryfast", "bf": "2"}),
    "hevc": (["libx265", "hevc"], ".mp4", {"preset": "veryfast"}),
    "vp9": (["libvpx-vp9"], ".webm", {"deadline": "realtime", "cpu-used": "8"}),
    "av1": (["libsvtav1", "libaom-av1"], ".mkv", {}),
}


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def make_video(folder: Path, codec: str, sizes: Sizes) -> Path | None:
    """A moving noisy texture (a realistic bitrate), or None when this PyAV has no encoder for `codec`."""
    names, suffix, options = ENCODERS[codec]
    encoder = next((n for n in names if n in av.codecs_available), None)
    if encoder is None:
        return None
    path = folder / f"gpu-{codec}-{sizes.width}x{sizes.height}-{sizes.seconds}s{suffix}"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (sizes.height * 2, sizes.width * 2, 3), dtype=np.uint8)
    partial = path.with_name(f".partial-{path.name}")  # a stopped section leaves no half video behind
    with av.open(str(partial), "w", format=suffix.lstrip(".").replace("mkv", "matroska")) as container:
        stream = container.add_stream(encoder, rate=30, options=options)
        stream.width, stream.height, stream.pix_fmt = sizes.width, sizes.height, "yuv420p"
        for i in range(sizes.seconds * 30):
            y, x = (3 * i) % sizes.height, (5 * i) % sizes.width
            frame = av.VideoFrame.from_ndarray(texture[y:y + sizes.height, x:x + sizes.width], "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def _grey_levels(clip: np.ndarray, spec: Any) -> np.ndarray:
    """A preprocessed clip back in 0-255 units, frames first: [T, C, H, W]."""
    frames = clip if spec.layout == "TCHW" else np.moveaxis(clip, 0, 1)
    mean = np.asarray(spec.mean, np.float32)[None, :, None, None]
    std = np.asarray(spec.std, np.float32)[None, :, None, None]
    return (frames * std + mean) * 255.0


def decode_parity(folder: Path, sizes: Sizes, device: str) -> Section:
    from vidsearch.video import ClipSpec, get_preprocess_preset, probe, read_clips, segment
    from vidsearch.video.dali import dali_read_clips

    spec = get_preprocess_preset("viclip")
    rows: dict[str, Any] = {}
    for codec in ENCODERS:
        path = make_video(folder, codec, sizes)
        if path is None:
            rows[codec] = {"status": "skipped", "reason": "no encoder in this PyAV"}
            continue
        clips = segment(probe(path), ClipSpec(length_s=1.0))
        try:
            gpu = [t for _, t in dali_read_clips(path, clips, spec, device=device,  # type: ignore[arg-type]
                                                 device_id=0 if device == "gpu" else None)]
        except Exception as exc:  # a codec the GPU cannot decode is a finding, not a crash
            rows[codec] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        cpu = [t for _, t in read_clips(path, clips, spec)]
        means, worst, out_of_order = [], 0.0, 0
        for g, c in zip(gpu, cpu, strict=True):
            g255, c255 = _grey_levels(g, spec), _grey_levels(c, spec)
            diff = np.abs(g255 - c255)
            means.append(float(diff.mean()))
            worst = max(worst, float(diff.max()))
            distances = np.abs(g255[:, None] - c255[None]).mean(axis=(2, 3, 4))  # [T gpu, T cpu]
            out_of_order += int((distances.argmin(axis=1) != np.arange(len(distances))).sum())
        rows[codec] = {"status": "ok", "clips": len(clips), "mean_abs_grey": float(np.mean(means)),
                       "max_clip_mean_abs_grey": float(np.max(means)), "worst_pixel": worst,
                       "frames_out_of_order": out_of_order}
    return {"status": "ok", "device": device, "codecs": rows}


def _rate(count: int, run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def _nvdec_frames(path: Path) -> int:
    import PyNvVideoCodec

    demuxer = PyNvVideoCodec.CreateDemuxer(filename=str(path))
    decoder = PyNvVideoCodec.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), cudacontext=0, cudastream=0,
                                           usedevicememory=True)
    return sum(len(list(decoder.Decode(packet))) for packet in demuxer)


def _nvdec_rate(path: Path, sessions: int) -> float:
    counts = [0] * sessions

    def work(i: int) -> None:
        counts[i] = _nvdec_frames(path)

    seconds = _threads(work, sessions)
    return sum(counts) / seconds


def _copies(path: Path, count: int) -> list[Path]:
    """`count` links to one file: the decoders treat each as its own video (each is read and fed)."""
    links = []
    for i in range(count):
        link = path.with_name(f"copy-{i:03d}-{path.name}")
        if not link.exists():
            link.symlink_to(path)
        links.append(link)
    return links


def _threads(work: Callable[[int], Any], count: int) -> float:
    """Seconds for `count` threads running `work(i)` together."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def _dali_clip_rate(paths: list[Path], sessions: int, device: str) -> tuple[int, int, float]:
    """The batch path as the embed job runs it (read, probe, cut into 1-s clips, decode once per video),
    over `paths` shared by `sessions` threads, each with its own DALI session: (clips, frames of the
    videos, seconds)."""
    from vidsearch.video import ClipSpec, get_preprocess_preset, probe_timeline, segment
    from vidsearch.video.dali import DaliSession, Device, dali_read_clips
    from vidsearch.video.source import Deadline, load_input

    spec = get_preprocess_preset("viclip")
    todo, counts = list(paths), [[0, 0] for _ in range(sessions)]
    lock = threading.Lock()
    where: Device = "gpu" if device == "gpu" else "cpu"
    session_list = [DaliSession(spec, where, 0 if where == "gpu" else None) for _ in range(sessions)]

    def read(data: Any, probed: Any, session: DaliSession) -> int:
        clips = segment(probed.info, ClipSpec(1.0))
        return sum(1 for _ in dali_read_clips(data, clips, spec, where, session.device_id, probed=probed,
                                              session=session))

    warm = load_input(paths[0], Deadline("warm-up", 60))
    read(warm, probe_timeline(warm), session_list[0])

    def work(i: int) -> None:
        while True:
            with lock:
                if not todo:
                    return
                path = todo.pop()
            data = load_input(path, Deadline(str(path), 60))
            probed = probe_timeline(data)
            counts[i][0] += read(data, probed, session_list[i])
            counts[i][1] += probed.info.frame_count

    seconds = _threads(work, sessions)
    return sum(c[0] for c in counts), sum(c[1] for c in counts), seconds


def _dali_all_frames_rate(paths: list[Path], sessions: int, device: str) -> float:
    """Baseline: every frame of `paths` decoded by DALI's decoder alone (no resize), `sessions` at once."""
    import nvidia.dali as dali
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    from vidsearch.video import probe

    frames = probe(paths[0]).frame_count
    encoded = [np.fromfile(path, np.uint8) for path in paths]
    todo, done, lock = list(range(len(paths))), [0] * sessions, threading.Lock()
    pipes = []
    for _ in range(sessions):
        pipe = dali.Pipeline(batch_size=1, num_threads=1, device_id=0 if device == "gpu" else None,
                             prefetch_queue_depth=1)
        with pipe:
            data = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)  # type: ignore[attr-defined]
            pipe.set_outputs(fn.decoders.video(data, device="mixed" if device == "gpu" else "cpu"))
        pipe.build()
        pipes.append(pipe)

    def work(i: int) -> None:
        while True:
            with lock:
                if not todo:
                    return
                number = todo.pop()
            pipes[i].feed_input("encoded", [encoded[number]])
            pipes[i].run()
            done[i] += frames

    seconds = _threads(work, sessions)
    return sum(done) / seconds


def decode_batch(folder: Path, sizes: Sizes, device: str) -> Section:
    """Decode-only clips/s of the batch path with 1-8 DALI sessions on 1-s clips, against the all-frames
    baseline on the same files in this run (every engine: PyNvVideoCodec sessions, DALI sessions).
    The ratio compares video frames gone through per second (the clip path must decode the groups of
    pictures its frames are in, nearly every frame of 1-s clips) with the baseline's frames/s."""
    codec = "h264" if device == "gpu" else "vp9"  # DALI's CPU decoder: VP9 (smoke runs here)
    path = make_video(folder, codec, sizes)
    assert path is not None, f"PyAV has no {codec} encoder"
    paths = _copies(path, 16 if sizes is FULL else 4)
    result: Section = {"status": "ok", "device": device,
                       "videos": f"{len(paths)} × {sizes.width}x{sizes.height} {codec}, {sizes.seconds} s"}
    best_clip_fps = 0.0
    for sessions in (1, 2, 4, 8) if sizes is FULL else (1, 2):
        clips, frames, seconds = _dali_clip_rate(paths, sessions, device)
        result[f"clips_per_s_{sessions}_sessions"] = clips / seconds
        best_clip_fps = max(best_clip_fps, frames / seconds)
    result["video_frames_per_s_best"] = best_clip_fps
    baseline: dict[str, float] = {}
    for sessions in (1, 4, 8) if sizes is FULL else (1, 2):
        dali_rate = _dali_all_frames_rate(paths, sessions, device)
        baseline[f"dali_all_frames_per_s_{sessions}_sessions"] = dali_rate
        if device == "gpu":
            try:
                baseline[f"nvdec_all_frames_per_s_{sessions}_sessions"] = _nvdec_rate(path, sessions)
            except Exception as exc:
                result["nvdec_error"] = f"{type(exc).__name__}: {exc}"[:300]
    result.update(baseline)
    result["baseline_frames_per_s"] = max(baseline.values())
    result["ratio_vs_baseline"] = best_clip_fps / result["baseline_frames_per_s"]  # target ≥ 0.7
    return result


def embed_job(folder: Path, sizes: Sizes, device: str) -> Section:
    """The whole `vidsearch embed` (local engine, `--decoder dali`, 4 DALI sessions) against decode-only
    and model-only on the same files. The model is the shipped demo ViCLIP on `--runtime auto` (the
    torch runtime on a GPU, the embedded ONNX Runtime without one)."""
    from rich.console import Console

    from vidsearch.demo.run import export_demo_model
    from vidsearch.jobs import EmbedJob, run_embed
    from vidsearch.runtime import RuntimeConfig, open_runtime
    from vidsearch.video import ClipSpec, probe, read_clips, segment

    codec = "h264" if device == "gpu" else "vp9"
    path = make_video(folder, codec, sizes)
    assert path is not None, f"PyAV has no {codec} encoder"
    corpus = folder / f"embed-{codec}"
    corpus.mkdir(exist_ok=True)
    for link in _copies(path, 16 if sizes is FULL else 4):
        target = corpus / link.name
        if not target.exists():
            target.symlink_to(path)
    repository = folder / "demo-repository"
    export_demo_model(Path(__file__).parents[1] / "vidsearch" / "training" / "demo_model", repository,
                      Console(quiet=True))
    sessions = 4 if sizes is FULL else 2
    clips, _, seconds = _dali_clip_rate(sorted(corpus.iterdir()), sessions, device)
    decode_rate = clips / seconds
    config = RuntimeConfig(kind="auto", model_repository=repository)
    runtime = open_runtime(config)
    try:
        vision = runtime.facts.vision
        assert vision is not None
        assert vision.preprocess is not None
        one = [t for _, t in read_clips(path, segment(probe(path), ClipSpec(1.0)), vision.preprocess)]
        batch = np.stack([one[i % len(one)] for i in range(vision.batch)])
        runtime.embed_video(batch)
        model_rate = _rate(len(batch) * sizes.repeats,
                           lambda: [runtime.embed_video(batch) for _ in range(sizes.repeats)])
    finally:
        runtime.close()
    with tempfile.TemporaryDirectory() as out:
        summary = run_embed(EmbedJob(input=str(corpus), out=Path(out) / "out", clips=ClipSpec(1.0),
                                     runtime=config, decoder="dali",
                                     workers=sessions, queue_clips=64, progress=False))
    bound = min(decode_rate, model_rate)
    choice = runtime.choice
    return {"status": "ok", "model": f"demo ViCLIP ({choice.runtime} on {choice.device})",
            "decoder": summary.decoder,
            "sessions": sessions, "clips": summary.clips, "decode_only_clips_per_s": decode_rate,
            "model_only_clips_per_s": model_rate, "job_clips_per_s": summary.clips_per_s,
            "job_vs_bound": summary.clips_per_s / bound}  # target ≥ 0.8


def models(sizes: Sizes) -> Section:
    import torch

    result: Section = {"status": "ok"}
    for preset in ("viclip-b16", "viclip-l14"):
        result.update(_tower_speed(preset, sizes))
        torch.cuda.empty_cache()  # the tower is gone with its call: free its memory for the next
    return result


def _tower_speed(preset: str, sizes: Sizes) -> Section:
    """fp16 vision clips/s at the report's batch, and text latency for one query (eager, CUDA graph)."""
    import torch

    from vidsearch.models import create_model

    model = create_model(preset).cuda().half().eval()
    frames = torch.randn(sizes.model_batch, 8, 3, 224, 224, device="cuda", dtype=torch.half)
    tokens = torch.randint(1, 49000, (1, 32), device="cuda")
    with torch.inference_mode():
        model.encode_video(frames)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(sizes.repeats):
            model.encode_video(frames)
        torch.cuda.synchronize()
        clips_per_s = sizes.model_batch * sizes.repeats / (time.perf_counter() - start)
        eager = _latency_ms(lambda: model.encode_text(tokens), sizes.repeats)
        graph = _cuda_graph(lambda: model.encode_text(tokens))
        captured = _latency_ms(graph.replay, sizes.repeats)
    return {f"{preset}_vision_clips_per_s": clips_per_s, f"{preset}_text_ms_eager": eager,
            f"{preset}_text_ms_cuda_graph": captured}


def _latency_ms(call: Callable[[], Any], repeats: int) -> float:
    import torch

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]) * 1e3)


def _cuda_graph(call: Callable[[], Any]) -> Any:
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return graph


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1024, dim)).astype(np.float32)
    x = centres[rng.integers(0, 1024, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def faiss_section(sizes: Sizes) -> Section:
    import faiss

    if faiss.get_num_gpus() == 0:
        return {"status": "skipped", "reason": "this FAISS sees no GPU (faiss-gpu-cuvs is in the bundle)"}
    dim, k = 512, 10
    base, queries = _clustered(sizes.vectors, dim, 0), _clustered(1000, dim, 1)
    exact = faiss.IndexFlatIP(dim)
    exact.add(base)
    _, truth = exact.search(queries, k)
    lists = min(4096, sizes.vectors // 40)
    cpu_index = faiss.index_factory(dim, f"IVF{lists},SQfp16", faiss.METRIC_INNER_PRODUCT)
    cpu_index.train(base[: min(len(base), 200_000)])
    cpu_index.add(base)
    resources = faiss.StandardGpuResources()
    index = faiss.index_cpu_to_gpu(resources, 0, cpu_index)
    faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", 16)
    _, found = index.search(queries, k)
    recall = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))
    single = _rate(len(queries), lambda: [index.search(queries[i:i + 1], k) for i in range(len(queries))])
    batched = _rate(len(queries),
                    lambda: [index.search(queries[i:i + 32], k) for i in range(0, len(queries), 32)])
    project_b1, project_b32 = _clip_index_qps(base, queries, f"IVF{lists},SQfp16")
    return {"status": "ok", "vectors": sizes.vectors, "factory": f"IVF{lists},SQfp16", "nprobe": 16,
            "recall_at_10": recall, "raw_qps_b1": single, "raw_qps_b32": batched,
            "clip_index_qps_b1": project_b1, "clip_index_qps_b32": project_b32,
            "ratio_b1": project_b1 / single, "ratio_b32": project_b32 / batched}


def faiss_cagra(sizes: Sizes) -> Section:
    """CAGRA on unit vectors with L2, whose ranking is the inner product's: recall@10 and queries/s."""
    import faiss

    if faiss.get_num_gpus() == 0 or not hasattr(faiss, "GpuIndexCagra"):
        return {"status": "skipped", "reason": "this FAISS has no GPU CAGRA (faiss-gpu-cuvs has)"}
    dim, k = 512, 10
    base, queries = _clustered(sizes.vectors, dim, 0), _clustered(1000, dim, 1)
    exact = faiss.IndexFlatIP(dim)
    exact.add(base)
    _, truth = exact.search(queries, k)
    resources = faiss.StandardGpuResources()
    index = faiss.GpuIndexCagra(resources, dim, faiss.METRIC_L2, faiss.GpuIndexCagraConfig())
    index.train(base)
    result: Section = {"status": "ok", "vectors": sizes.vectors, "metric": "L2 on unit vectors"}
    for itopk in (32, 64, 128):
        params = faiss.SearchParametersCagra()
        params.itopk_size = itopk
        _, found = index.search(queries, k, params=params)
        recall = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))
        single = _rate(len(queries), lambda p=params: [index.search(queries[i:i + 1], k, params=p)
                                                       for i in range(len(queries))])
        batched = _rate(len(queries), lambda p=params: [index.search(queries[i:i + 32], k, params=p)
                                                        for i in range(0, len(queries), 32)])
        result[f"itopk {itopk}"] = {"recall_at_10": recall, "qps_b1": single, "qps_b32": batched}
    return result


def search_serving(sizes: Sizes, clips: int, out: Path, cache: Path) -> Section:
    """`benchmarks/serving.py --device gpu` at `clips` clips; its export and index are kept in `cache`
    (a rerun on the same warm machine reuses them)."""
    clips = sizes.vectors if sizes is SMOKE else clips
    target = out.with_name(f"gpu-serving-{clips}.json")
    command = [sys.executable, str(Path(__file__).with_name("serving.py")), "--device", "gpu",
               "--towers", "b16-text", "--n", str(clips), "--requests", "400", "--out", str(target),
               "--runtime", "auto", "--cache", str(cache / "serving")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"serving.py at {clips} clips failed: {done.stderr[-800:]}")
    row = json.loads(target.read_text())["results"][0]
    return {"status": "ok", "runtime": "auto", "clips": clips, "index_build_s": row["index_build_s"],
            "text_p50_ms": row["text_p50_ms"], "index_p50_ms": row["index_p50_ms"],
            "search_c1_p50_ms": row["loads"][0]["p50_ms"],
            "search_c32_per_s": row["loads"][-1]["requests_per_s"],
            "text_best_per_s": row["text_best_per_s"], "index_best_per_s": row["index_best_per_s"],
            "c32_of_min_peak": row["c32_min_fraction"]}


def _clip_index_qps(base: np.ndarray, queries: np.ndarray, factory: str) -> tuple[float, float]:
    """Queries/s through the project's own `FaissClipIndex` (metadata rows included): one at a time
    through `search`, and 32 at a time through `search_batch` (what the serving batcher calls)."""
    from vidsearch.index import ClipRecord, FaissClipIndex, IndexConfig, PageRequest, SearchOptions

    index = FaissClipIndex.create(IndexConfig(base.shape[1], "bench", factory=factory))
    index.train(base[:200_000])
    step = 100_000
    for start in range(0, len(base), step):
        stop = min(start + step, len(base))
        records = [ClipRecord(f"v{i // 10}#{i % 10:05d}", f"v{i // 10}", f"v{i // 10}.mp4", 0.0, 1.0)
                   for i in range(start, stop)]
        index.add(records, base[start:stop])
    index.search(queries[:1], 10)
    single = _rate(len(queries), lambda: [index.search(queries[i:i + 1], 10) for i in range(len(queries))])
    requests = [PageRequest(SearchOptions(top_k=10))] * 32
    whole = len(queries) // 32 * 32
    batched = _rate(whole, lambda: [index.search_batch(queries[i:i + 32], requests)
                                    for i in range(0, whole, 32)])
    return single, batched



# -- the torch runtime (issue 15) -------------------------------------------------------------------


def _runtime_tower(module: Any, name: str, dtype: str, shape: tuple[int, ...], max_batch: int,
                   graphs: bool) -> Any:
    """A served tower of the torch runtime (padding, fixed batch sizes, CUDA graphs) on the GPU."""
    import torch

    from vidsearch.formats.model_repository import TensorInfo
    from vidsearch.runtime.torch_backend import DTYPES, Tower, batch_sizes

    return Tower(module, TensorInfo(name, dtype, (-1, *shape)), torch.device("cuda"), DTYPES["float16"],
                 batch_sizes(max_batch), graphs)


def torch_runtime(sizes: Sizes) -> Section:
    """The torch runtime's towers in fp16: one text query's p50 (numpy in, numpy out) eager and replayed
    from a CUDA graph, for ViCLIP-B/16 and L/14; vision clips/s at its best padded batch."""
    import torch

    from vidsearch.export.inputs import caption_tokens
    from vidsearch.formats.model_repository import FRAMES, TOKENS
    from vidsearch.models import create_model
    from vidsearch.models.towers import TextTower, VisionTower
    from vidsearch.runtime.torch_backend import batch_sizes

    result: Section = {"status": "ok", "dtype": "float16"}
    top = 2 * sizes.model_batch
    vision_batches = [b for b in batch_sizes(top) if b >= max(1, sizes.model_batch // 4)]
    for preset in ("viclip-b16", "viclip-l14"):
        model = create_model(preset).eval()
        length = model.config.context_length
        tokens = caption_tokens(length)[:1]
        for graphs in (False, True):
            text = _runtime_tower(TextTower(model), TOKENS, "int64", (length,), 1, graphs)
            text.capture_all()
            label = "cuda_graph" if graphs else "eager"
            result[f"{preset}_text_p50_ms_{label}"] = _latency_ms(lambda t=text, q=tokens: t.run(q),
                                                                  sizes.repeats * 10)
        shape = (model.config.num_frames, 3, model.config.image_size, model.config.image_size)
        vision = _runtime_tower(VisionTower(model), FRAMES, "float32", shape, top, graphs=True)
        vision.capture_all()
        rates = {}
        for batch in vision_batches:
            clips = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
            vision.run(clips)
            rates[batch] = _rate(batch * sizes.repeats,
                                 lambda v=vision, c=clips: [v.run(c) for _ in range(sizes.repeats)])
        best = max(rates, key=lambda b: rates[b])
        result[f"{preset}_vision_clips_per_s"] = rates[best]
        result[f"{preset}_vision_best_batch"] = best
        del model, text, vision
        torch.cuda.empty_cache()
    return result


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def torch_parity(folder: Path, sizes: Sizes) -> Section:
    """ViCLIP-B/16 (random weights) exported by `vidsearch export`: the torch runtime on the GPU (fp16,
    bf16, CUDA graphs) against the embedded runtime (ONNX Runtime, CPU, fp32) of the same export."""
    import torch

    from vidsearch.export import ExportConfig, export_model
    from vidsearch.models import create_model
    from vidsearch.runtime import RuntimeConfig, open_runtime

    repository = folder / "parity-repository"
    started = time.perf_counter()
    if not repository.is_dir():  # exported once per machine: a rerun reuses it (the export is CPU-bound)
        torch.manual_seed(0)
        checkpoint = folder / "viclip-b16.pth"
        torch.save({"model": create_model("viclip-b16").state_dict()}, checkpoint)
        building = folder / ".building-parity-repository"
        shutil.rmtree(building, ignore_errors=True)
        export_model(ExportConfig("viclip-b16", checkpoint, building, max_batch=sizes.model_batch))
        building.rename(repository)
    result: Section = {"status": "ok", "export_seconds": time.perf_counter() - started}
    queries = [f"a person doing thing number {i} in a park" for i in range(16)]
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((sizes.model_batch + 3, 8, 3, 224, 224)).astype(np.float32)
    with open_runtime(RuntimeConfig(model_repository=repository)) as cpu:
        reference_text, reference_video = cpu.embed_text(queries), cpu.embed_video(clips)
    for dtype in ("float16", "bfloat16"):
        config = RuntimeConfig(kind="torch", gpu="required", dtype=dtype, model_repository=repository)
        with open_runtime(config) as gpu:
            result[f"{dtype}_runtime"] = gpu.choice.describe()
            text, video = gpu.embed_text(queries), gpu.embed_video(clips)
            result[f"{dtype}_text_min_cosine"] = float(_cosines(text, reference_text).min())
            result[f"{dtype}_vision_min_cosine"] = float(_cosines(video, reference_video).min())
    return result


def _train_steps(folder: Path, device: str, precision: str, steps: int, items: int) -> Section:
    """`steps` optimiser steps of the demo recipe (its model, data, batch and schedule) on `device`.
    Both devices train in one folder: the synthetic set and its decoded cache are made once (by up to
    8 processes; the recipe's 2 are for a 2-core machine) and kept for a rerun."""
    from vidsearch.training.config import load_recipe
    from vidsearch.training.loop import StepInfo
    from vidsearch.training.viclip import train_viclip

    recipe = load_recipe("demo", {"device": device, "loop.precision": precision, "loop.steps": steps,
                                  "loop.save_every": 0, "data.synthetic.n": items,
                                  "data.workers": min(8, os.cpu_count() or 1)})
    infos: list[StepInfo] = []
    train_viclip(recipe, folder / "training", on_step=infos.append)
    timed = infos[-1].seconds - infos[0].seconds  # the first step warms up (allocations, kernels)
    return {"steps_per_s": (len(infos) - 1) / timed, "first_loss": infos[0].loss, "last_loss": infos[-1].loss,
            "mean_loss_last_10": float(np.mean([i.loss for i in infos[-10:]]))}


def training(folder: Path, sizes: Sizes) -> Section:
    """50 steps of the demo training recipe on the GPU under bf16 autocast, and the same steps on the CPU
    in fp32: steps/s and the loss reached (same seed, same data order)."""
    steps = 50 if sizes is FULL else 5
    items = steps * 64 if sizes is FULL else 256  # one pass of the recipe's batch of 64: no item twice
    gpu = _train_steps(folder, "cuda", "bf16", steps, items)
    cpu = _train_steps(folder, "cpu", "fp32", steps, items)
    return {"status": "ok", "steps": steps, "recipe": "demo", "gpu_bf16": gpu, "cpu_fp32": cpu,
            "speedup": gpu["steps_per_s"] / cpu["steps_per_s"],
            "last_loss_difference": gpu["last_loss"] - cpu["last_loss"]}


def env() -> Section:
    import torch

    result: Section = {"status": "ok", "python": platform.python_version(), "torch": torch.__version__,
                       "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0)}
    for module in ("nvidia.dali", "faiss", "PyNvVideoCodec", "av"):
        try:
            result[module] = __import__(module, fromlist=["__version__"]).__version__
        except Exception as exc:
            result[module] = f"unavailable ({type(exc).__name__})"
    return result


@dataclass(frozen=True)
class Plan:
    """A section of the report: its name, its estimated wall time at full sizes on one H200 host
    (16 cores; process start and CUDA set-up included; docs/gpu.md shows how each was estimated),
    whether it needs a GPU, and whether the smoke run does it on DALI's CPU decoder without one."""

    name: str
    estimate_s: float
    needs_gpu: bool = True
    cpu_smoke: bool = False


# In priority order: the issues' targets first (decode correctness and speed, the torch runtime's
# targets, the index ratios), then the embed job, parity, training, search at 1M; search at 10M last.
PLANS = (
    Plan("env", 10),
    Plan("decode_parity", 45, cpu_smoke=True),
    Plan("decode_batch", 40, cpu_smoke=True),
    Plan("torch_runtime", 35),
    Plan("faiss", 60),
    Plan("embed_job", 30, cpu_smoke=True),
    Plan("torch_parity", 75),
    Plan("training", 40),
    Plan("models", 20),
    Plan("faiss_cagra", 45),
    Plan("search_1m", 130),
    Plan("search_10m", 420),
)
DEFAULT_BUDGET_S = 300.0  # the report's share of `make gpu-check`'s 8 minutes (docs/gpu.md)
SMOKE_ESTIMATE_S = 5.0
CACHE = Path(tempfile.gettempdir()) / "vidsearch-gpu-cache"


def section_makers(sizes: Sizes, decoder: str, out: Path, cache: Path) -> dict[str, Callable[[], Section]]:
    """What each section runs, in its own process. `cache` keeps the made videos, exports and indexes
    between sections and across reruns on the same warm machine."""
    media = cache / ("media-smoke" if sizes is SMOKE else "media")
    media.mkdir(parents=True, exist_ok=True)
    return {
        "env": env,
        "decode_parity": lambda: decode_parity(media, sizes, decoder),
        "decode_batch": lambda: decode_batch(media, sizes, decoder),
        "embed_job": lambda: embed_job(media, sizes, decoder),
        "models": lambda: models(sizes),
        "faiss": lambda: faiss_section(sizes),
        "torch_runtime": lambda: torch_runtime(sizes),
        "torch_parity": lambda: torch_parity(media, sizes),
        "training": lambda: training(media, sizes),
        "faiss_cagra": lambda: faiss_cagra(sizes),
        "search_1m": lambda: search_serving(sizes, 1_000_000, out, cache),
        "search_10m": lambda: search_serving(sizes, 10_000_000, out, cache),
    }


def run_one(make: Callable[[], Section]) -> Section:
    """One section inside its own process: an exception is the section's error, not the report's."""
    try:
        return make()
    except Exception as exc:
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500],
                "trace": traceback.format_exc(limit=4)[-1500:]}


def _stop(process: subprocess.Popen[str]) -> None:
    """Stop a section and whatever it started (a serving.py, its server): its whole process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def launch(command: list[str], result: Path, deadline_s: float | None) -> Section:
    """Run one section's process to its deadline: its JSON result, or why there is none."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        _stop(process)
        return {"status": "stopped", "reason": f"ran over its deadline of {deadline_s:.0f} s"}
    if result.is_file():
        return dict(json.loads(result.read_text()))
    return {"status": "error", "error": f"the section's process exited {process.returncode} without a "
            f"result: {(output or '')[-800:]}"}


def section_deadline(estimate_s: float, left_s: float) -> float:
    """Time a section may take: twice its estimate and a minute, never past the whole run's budget."""
    return min(left_s, 2 * estimate_s + 60)


def run_sections(plans: list[Plan], budget_s: float | None, command: Callable[[Plan, Path], list[str]],
                 gpu: bool, smoke: bool = False) -> dict[str, Section]:
    """Every plan in order, each in its own process: skipped when it needs a GPU that is not here or
    when its estimate does not fit in what is left of `budget_s` (None: no budget, no deadlines);
    stopped when it runs past its deadline. Nothing is dropped silently: every plan gets a row."""
    report: dict[str, Section] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vidsearch-gpu-sections-") as tmp:
        for plan in plans:
            estimate = SMOKE_ESTIMATE_S if smoke else plan.estimate_s
            left = None if budget_s is None else budget_s - (time.monotonic() - started)
            if plan.needs_gpu and not gpu and not (smoke and plan.cpu_smoke):
                section: Section = {"status": "skipped", "reason": "no CUDA GPU"}
            elif left is not None and estimate > left:
                section = {"status": "skipped", "reason": "time budget",
                           "estimate_s": estimate, "left_s": round(max(left, 0.0), 1)}
            else:
                deadline = None if left is None else section_deadline(estimate, left)
                result = Path(tmp) / f"{plan.name}.json"
                begun = time.monotonic()
                section = launch(command(plan, result), result, deadline)
                section["seconds"] = round(time.monotonic() - begun, 1)
                if deadline is not None:
                    section["deadline_s"] = round(deadline, 1)
            print(f"{plan.name}: {section['status']} ({section.get('seconds', 0)} s)", flush=True)
            report[plan.name] = section
    return report


def print_table(report: dict[str, Section]) -> None:
    for name, section in report.items():
        print(f"\n## {name} — {section.get('status')}")
        for key, value in section.items():
            if key in ("status", "trace"):
                continue
            for label, item in (value.items() if isinstance(value, dict) else [("", value)]):
                shown = f"{item:,.3f}" if isinstance(item, float) else item
                print(f"  {key + (' ' + label if label else ''):<40} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the plumbing, anywhere")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    names = [plan.name for plan in PLANS]
    parser.add_argument("--sections", nargs="*", choices=names, default=names,
                        help="run only these (always in priority order)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="seconds for the whole report: a section whose estimate does not fit in what "
                        "is left is skipped, one that runs past its deadline is stopped")
    parser.add_argument("--full", action="store_true", help="every section, no budget, no deadlines")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="videos, exports and indexes kept for the next run on this machine")
    parser.add_argument("--section", choices=names, help=argparse.SUPPRESS)  # a section's own process
    parser.add_argument("--section-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    gpu = cuda_available()
    if args.section:
        makers = section_makers(sizes, "gpu" if gpu else "cpu", args.out, args.cache)
        args.section_out.write_text(json.dumps(run_one(makers[args.section])))
        return

    def command(plan: Plan, result: Path) -> list[str]:
        return [sys.executable, __file__, "--section", plan.name, "--section-out", str(result),
                "--out", str(args.out), "--cache", str(args.cache), *(["--smoke"] if args.smoke else [])]

    plans = [plan for plan in PLANS if plan.name in args.sections]
    budget = None if args.full else args.budget_s
    started = time.monotonic()
    report = run_sections(plans, budget, command, gpu, args.smoke)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"sizes": sizes.__dict__, "budget_s": budget,
                                    "seconds": round(time.monotonic() - started, 1),
                                    "sections": report}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
