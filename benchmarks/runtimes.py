"""ViCLIP-B/16 towers on this machine: PyTorch eager, the torch runtime and ONNX Runtime (CPU; CUDA and
TensorRT where present).

Random weights (speed does not depend on them). "torch runtime cpu" is the served torch runtime's
tower (`vidsearch.runtime.torch_backend.Tower`: numpy in, padding to its fixed batch sizes, fp32
eager on the CPU, numpy out), measured in the same run as ONNX Runtime, the embedded runtime's engine.
Both towers are exported the way `vidsearch export` exports them (dynamo exporter, opset 18, raw +
normalised outputs). For every tower, runtime and batch
size it measures items per second (clips/s, queries/s), and the achieved FLOP/s against this
machine's own fp32 matrix-multiply peak, measured in the same run (best of torch.mm, numpy @ and an
ONNX Runtime MatMul over a few square sizes, on the same threads). FLOPs = 2 × the
multiply-accumulates in docs/models.md: 179.6 G per clip (8 × 224²), 1.22 G per query. A second
table tries ONNX Runtime session options.

Targets (CPU): text tower at batch 1, ONNX Runtime ≥ 1.3 × eager; vision tower ≥ 70 % of the peak.

`--internvideo2` measures the InternVideo2 stage-2 1B vision tower instead (4 × 224², ~2.3 TFLOP a
clip, counted from its config; exported with its weights in an external-data file, > 2 GB): a few
clips at batch 1, eager and ONNX Runtime. Target ≥ 60 % of the peak. On a shared machine the load of
other jobs moves both numbers by 2–3× within minutes, so besides the peak of the sweep at the start
each clip is paired with the peak of that moment: torch.mm 2048² (the sweep's fastest GEMM here),
timed just before and just after the clip, the faster of the two; the verdict uses that pairing.
`--layers N` keeps only N of its 40 blocks: every block costs the same (57.6 GFLOP), so a 2–4 block
proxy gives the per-block share of the peak in seconds, without the 14 GB and the 10-minute export.
`--opset` (repeatable) exports the tower at each opset given: from 20 on the exporter writes Gelu,
from 23 Attention and RMSNormalization, which ONNX Runtime runs as single kernels.

    .venv/bin/python benchmarks/runtimes.py                 # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/runtimes.py --quick         # smaller batches, shorter timing
    .venv/bin/python benchmarks/runtimes.py --internvideo2  # about 10 minutes; needs ~14 GB of memory
    .venv/bin/python benchmarks/runtimes.py --internvideo2 --layers 2 --opset 18 --opset 23  # ~2 min

Prints tables and writes benchmarks/results/runtimes.json (runtimes-internvideo2.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from vidsearch.errors import ConfigError
from vidsearch.export.config import EXTERNAL_DATA_THRESHOLD, MIN_OPSET
from vidsearch.export.graphs import Graph, graphs_for
from vidsearch.export.inputs import caption_tokens, random_batch
from vidsearch.export.onnx_export import export_onnx
from vidsearch.formats.model_repository import TensorInfo
from vidsearch.models import InternVideo2, InternVideo2Config, create_model
from vidsearch.models.wordpiece import SPECIALS
from vidsearch.runtime.torch_backend import Tower, batch_sizes

MACS = {"text": 1.22e9, "vision": 179.6e9}
UNITS = {"text": "queries/s", "vision": "clips/s"}
TEXT_SPEEDUP_TARGET = 1.3
VISION_PEAK_TARGET = 0.70
INTERNVIDEO2_PEAK_TARGET = 0.60
INTERNVIDEO2_PRESET = "internvideo2-s2-1b"
RESULTS = Path(__file__).parent / "results" / "runtimes.json"


@dataclass
class Row:
    tower: str
    runtime: str
    batch: int
    items_per_s: float
    latency_ms: float
    gflops: float
    peak_fraction: float
    paired_peak_fraction: float | None = None  # against the peak timed beside each run (--internvideo2)
    cpu_peak_fraction: float | None = None  # the same per CPU second (--internvideo2)


def timed(fn: Callable[[], object], min_time: float, min_runs: int) -> float:
    """Median seconds per call, after one warm-up call."""
    fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_time:
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def matmul_session(n: int, threads: int) -> ort.InferenceSession:
    """ONNX Runtime running one MatMul [n, n] × [n, n] (its own GEMM, MLAS)."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, [n, n]) for x in "ab"],
        [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [n, n])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def matmul_peak(seconds: float, threads: int) -> dict[str, float]:
    """Best fp32 matrix-multiply FLOP/s of torch.mm, numpy @ and ONNX Runtime MatMul over a few sizes:
    the fastest GEMM this machine has, on the same threads as the models."""
    best = {"torch": 0.0, "numpy": 0.0, "onnxruntime": 0.0}
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        x, y = a.numpy(), b.numpy()
        session = matmul_session(n, threads)
        calls = {"torch": lambda a=a, b=b: torch.mm(a, b), "numpy": lambda x=x, y=y: x @ y,
                 "onnxruntime": lambda s=session, x=x, y=y: s.run(None, {"a": x, "b": y})}
        for name, fn in calls.items():
            best[name] = max(best[name], 2 * n**3 / timed(fn, seconds, 3))
    return best


PROBE_SIZE = 2048


def probe_peak() -> tuple[float, float]:
    """The GEMM peak of this moment, per wall second and per CPU second of this process (all its
    threads): three torch.mm 2048² (~0.15 s on a quiet machine)."""
    a, b = torch.randn(PROBE_SIZE, PROBE_SIZE), torch.randn(PROBE_SIZE, PROBE_SIZE)
    torch.mm(a, b)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(3):
        torch.mm(a, b)
    flops = 3 * 2 * PROBE_SIZE**3
    return flops / (time.perf_counter() - wall), flops / (time.process_time() - cpu)


def paired(name: str, run: Callable[[], object], flops: float, runs: int, peak: float) -> Row:
    """`runs` timed calls of `run` (after a warm-up), each between two peak probes: the median call
    time; the median over calls of the call's FLOP/s over the faster probe beside it; and the same per
    CPU second (FLOP per CPU second of the call over that of the probes), which other jobs' load
    moves less: a thread that waits for a core uses none."""
    run()
    times, fractions, cpu_fractions = [], [], []
    for _ in range(runs):
        before = probe_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
        after = probe_peak()
        times.append(seconds)
        fractions.append(flops / seconds / max(before[0], after[0]))
        cpu_fractions.append(flops / cpu_seconds / ((before[1] + after[1]) / 2))
    seconds = statistics.median(times)
    row = Row("vision", name, 1, 1 / seconds, seconds * 1e3, flops / seconds / 1e9, flops / seconds / peak,
              statistics.median(fractions), statistics.median(cpu_fractions))
    print(f"  vision {name:28s}: {1 / seconds:9.3f} clips/s, {statistics.median(fractions):.1%} of the "
          f"paired peak, {statistics.median(cpu_fractions):.1%} per CPU second "
          f"(runs: {', '.join(f'{t:.2f} s' for t in times)})", flush=True)
    return row


def ort_session(path: Path, threads: int, level: ort.GraphOptimizationLevel | None = None,
                spinning: bool = True, providers: list[str] | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = level or ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def inputs_for(graph: Graph, batch: int) -> dict[str, np.ndarray]:
    if graph.tokenizer is not None:
        tokens = caption_tokens(graph.inputs[0].shape[-1])
        return {graph.inputs[0].name: np.resize(tokens, (batch, tokens.shape[1]))}
    return random_batch(graph, batch, np.random.default_rng(0))


def runners(graph: Graph, path: Path, threads: int,
            max_batch: int) -> dict[str, Callable[[dict[str, np.ndarray]], object]]:
    """The runtimes to compare: eager PyTorch, the torch runtime's tower on the CPU, and ONNX Runtime on
    every provider present."""
    module = graph.module

    def eager(feed: dict[str, np.ndarray]) -> object:
        with torch.inference_mode():
            return module(*(torch.from_numpy(v) for v in feed.values()))

    spec = graph.inputs[0]
    tower = Tower(module, TensorInfo(spec.name, spec.dtype, (-1, *spec.shape)), torch.device("cpu"),
                  torch.float32, batch_sizes(max_batch), cuda_graphs=False)
    found: dict[str, Callable[[dict[str, np.ndarray]], object]] = {
        "pytorch eager": eager, "torch runtime cpu": lambda feed: tower.run(feed[spec.name])}
    session = ort_session(path, threads)
    found["onnxruntime cpu"] = lambda feed: session.run(None, feed)
    available = ort.get_available_providers()
    for provider, name in (("CUDAExecutionProvider", "onnxruntime cuda"),
                           ("TensorrtExecutionProvider", "onnxruntime tensorrt")):
        if provider in available:
            gpu = ort_session(path, threads, providers=[provider, "CPUExecutionProvider"])
            found[name] = lambda feed, s=gpu: s.run(None, feed)
    return found


def internvideo2_vision_macs(config: InternVideo2Config) -> float:
    """Multiply-accumulates of one clip through the vision tower: patch embedding, the blocks (q/k/v,
    output projection, MLP, and the two attention products over all tokens), the pooling and
    `vision_proj`. Norms, softmax and activations are left out (a fraction of a percent)."""
    patches = config.num_frames * config.grid**2
    tokens = 1 + patches
    width, hidden = config.vision_width, config.mlp_hidden_dim
    block = tokens * (4 * width**2 + 2 * width * hidden) + 2 * tokens**2 * width
    embed = patches * 3 * config.patch_size**2 * width
    pool = 2 * tokens * width**2 + width**2 + 2 * tokens * width + width * config.clip_embed_dim
    return float(config.vision_layers * block + embed + pool + config.clip_embed_dim * config.embed_dim)


def measure(tower: str, graph: Graph, path: Path, batches: list[int], threads: int, min_time: float,
            peak: float) -> list[Row]:
    rows = []
    for name, run in runners(graph, path, threads, max(batches)).items():
        for batch in batches:
            feed = inputs_for(graph, batch)
            runs = 2 if tower == "vision" else 5
            seconds = timed(lambda run=run, feed=feed: run(feed), min_time, runs)
            flops = 2 * MACS[tower] * batch / seconds
            rows.append(Row(tower, name, batch, batch / seconds, seconds * 1e3, flops / 1e9, flops / peak))
            print(f"  {tower:6s} {name:20s} batch {batch:3d}: {batch / seconds:9.2f} {UNITS[tower]}",
                  flush=True)
    return rows


def option_rows(tower: str, graph: Graph, path: Path, batch: int, threads: int, min_time: float,
                peak: float) -> list[Row]:
    """ONNX Runtime session options: graph optimisation level, threads, spin-waiting."""
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    variants = [(f"ort {level}, {threads} thr", levels[level], threads, True) for level in levels]
    variants += [(f"ort all, {threads} thr, no spin", levels["all"], threads, False),
                 ("ort all, 1 thr", levels["all"], 1, True)]
    feed = inputs_for(graph, batch)
    rows = []
    for name, level, count, spinning in variants:
        session = ort_session(path, count, level, spinning)
        seconds = timed(lambda s=session: s.run(None, feed), min_time, 2 if tower == "vision" else 5)
        flops = 2 * MACS[tower] * batch / seconds
        rows.append(Row(tower, name, batch, batch / seconds, seconds * 1e3, flops / 1e9, flops / peak))
        print(f"  {tower:6s} {name:28s} batch {batch}: {batch / seconds:9.2f} {UNITS[tower]}", flush=True)
    return rows


def table(rows: list[Row], title: str) -> None:
    paired_rows = any(r.paired_peak_fraction is not None for r in rows)
    print(f"\n{title}")
    print(f"{'tower':6s} | {'runtime':28s} | {'batch':>5s} | {'items/s':>9s} | {'latency ms':>10s} | "
          f"{'GFLOP/s':>8s} | {'of peak':>7s}" + (" |  paired | per CPU s" if paired_rows else ""))
    for r in rows:
        extra = (f" | {r.paired_peak_fraction or 0.0:7.1%} | {r.cpu_peak_fraction or 0.0:9.1%}"
                 if paired_rows else "")
        print(f"{r.tower:6s} | {r.runtime:28s} | {r.batch:5d} | {r.items_per_s:9.2f} | "
              f"{r.latency_ms:10.1f} | {r.gflops:8.1f} | {r.peak_fraction:7.1%}{extra}")


def verdicts(rows: list[Row]) -> dict[str, object]:
    def find(tower: str, runtime: str, batch: int) -> Row:
        return next(r for r in rows if (r.tower, r.runtime, r.batch) == (tower, runtime, batch))

    speedup = find("text", "onnxruntime cpu", 1).items_per_s / find("text", "pytorch eager", 1).items_per_s
    ort_text, ort_vision = find("text", "onnxruntime cpu", 1), find("vision", "onnxruntime cpu", 1)
    torch_text, torch_vision = find("text", "torch runtime cpu", 1), find("vision", "torch runtime cpu", 1)
    vision = max((r for r in rows if r.tower == "vision"), key=lambda r: r.peak_fraction)
    return {
        "text_b1_ort_over_eager": speedup,
        "text_b1_target": TEXT_SPEEDUP_TARGET,
        "text_b1_met": speedup >= TEXT_SPEEDUP_TARGET,
        "vision_best_peak_fraction": vision.peak_fraction,
        "vision_best": f"{vision.runtime}, batch {vision.batch}",
        "vision_target": VISION_PEAK_TARGET,
        "vision_met": vision.peak_fraction >= VISION_PEAK_TARGET,
        "torch_runtime_over_ort_text_b1": torch_text.items_per_s / ort_text.items_per_s,
        "torch_runtime_over_ort_vision_b1": torch_vision.items_per_s / ort_vision.items_per_s,
    }


def machine(threads: int) -> dict[str, object]:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": threads,
            "load_average": os.getloadavg(), "torch": torch.__version__, "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers()}


def internvideo2_model(layers: int) -> InternVideo2:
    """The preset's model, with only its first `layers` vision blocks when `layers` > 0 (the proxy:
    every block has the same shapes, so the share of the peak per block is that of the whole tower)."""
    full = InternVideo2Config().vision_layers
    if not 0 <= layers <= full:
        raise ConfigError(f"--layers must be 1 to {full} (0: all), got {layers}")
    model = create_model(INTERNVIDEO2_PRESET, **({"vision_layers": layers} if layers else {}))
    assert isinstance(model, InternVideo2)
    return model.eval()


def internvideo2(args: argparse.Namespace, peaks: dict[str, float]) -> None:
    """The 1B vision tower at batch 1: a few clips, eager and ONNX Runtime (random weights)."""
    peak = max(peaks.values())
    model = internvideo2_model(args.layers)
    macs = internvideo2_vision_macs(model.config)
    model_layers = model.config.vision_layers
    title = f"{INTERNVIDEO2_PRESET} ({model_layers} blocks)"
    flops = 2 * macs
    print(f"{title} vision: {flops / 1e9:.0f} GFLOP per clip", flush=True)
    runs = 2 if model_layers == InternVideo2Config().vision_layers else 5
    load = [os.getloadavg()[0]]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        vocabulary = Path(folder) / "vocab.txt"  # the text graph wants one; any of the right size will do
        words = [f"w{i}" for i in range(model.config.vocab_size - len(SPECIALS))]
        vocabulary.write_text("\n".join([*SPECIALS, *words]) + "\n")
        _, vision = graphs_for(model, vocabulary)
        feed = inputs_for(vision, 1)
        module = vision.module

        def eager() -> object:
            with torch.inference_mode():
                return module(*(torch.from_numpy(v) for v in feed.values()))

        rows.append(paired("pytorch eager", eager, flops, runs, peak))
        load.append(os.getloadavg()[0])
        for opset in args.opset:
            path = Path(folder) / f"vision-{opset}.onnx"
            started = time.perf_counter()
            artefact = export_onnx(vision, path, opset=opset, max_batch=1, simplify=True,
                                   external_data_threshold=EXTERNAL_DATA_THRESHOLD)
            print(f"exported the vision tower at opset {opset} in {time.perf_counter() - started:.0f} s "
                  f"(external data: {artefact.external_data})", flush=True)
            session = ort_session(path, args.threads)
            rows.append(paired(f"onnxruntime cpu, opset {opset}", lambda s=session: s.run(None, feed), flops,
                               runs, peak))
            del session
            load.append(os.getloadavg()[0])
    measured = ", ".join(f"{name} {value / 1e9:.1f}" for name, value in peaks.items())
    table(rows, f"{title} vision, fp32, {args.threads} threads; matmul peak {peak / 1e9:.1f} "
                f"GFLOP/s ({measured}); load average {', '.join(f'{x:.1f}' for x in load)}")
    best = max(rows, key=lambda r: r.paired_peak_fraction or 0.0)
    best_fraction = best.paired_peak_fraction or 0.0
    met = best_fraction >= INTERNVIDEO2_PEAK_TARGET
    print(f"\nbest {best_fraction:.1%} of the paired peak, {best.peak_fraction:.1%} of the sweep's "
          f"({best.runtime}) (target {INTERNVIDEO2_PEAK_TARGET:.0%}: {'met' if met else 'MISSED'})")
    out = args.out.with_name(args.out.stem + "-internvideo2.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": machine(args.threads), "model": INTERNVIDEO2_PRESET,
        "vision_layers": model_layers, "gflop_per_clip": flops / 1e9,
        "load_average_1min": load, "matmul_peak_flops": peaks, "rows": [asdict(r) for r in rows],
        "verdict": {"best_paired_peak_fraction": best_fraction, "best_peak_fraction": best.peak_fraction,
                    "best": best.runtime, "target": INTERNVIDEO2_PEAK_TARGET, "met": met},
    }, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="batches 1-2 (vision), 1-8 (text); 1 s per point")
    parser.add_argument("--internvideo2", action="store_true",
                        help=f"the {INTERNVIDEO2_PRESET} vision tower instead of ViCLIP-B/16")
    parser.add_argument("--layers", type=int, default=0,
                        help="with --internvideo2: keep only this many vision blocks (a proxy)")
    parser.add_argument("--opset", type=int, action="append",
                        help=f"with --internvideo2: export at this opset (repeatable; default {MIN_OPSET})")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if (args.layers or args.opset) and not args.internvideo2:
        parser.error("--layers and --opset go with --internvideo2")
    if any(opset < MIN_OPSET for opset in args.opset or []):
        parser.error(f"--opset must be at least {MIN_OPSET}")
    args.opset = args.opset or [MIN_OPSET]
    torch.set_num_threads(args.threads)
    min_time = 1.0 if args.quick else 3.0
    vision_batches = [1, 2] if args.quick else [1, 2, 4]
    text_batches = [1, 8] if args.quick else [1, 8, 32, 64]

    print(f"fp32 matmul peak, {args.threads} threads ...", flush=True)
    peaks = matmul_peak(min_time, args.threads)
    peak = max(peaks.values())
    print("  " + ", ".join(f"{name} {flops / 1e9:.1f} GFLOP/s" for name, flops in peaks.items()))
    if args.internvideo2:
        internvideo2(args, peaks)
        return
    model = create_model("viclip-b16").eval()
    text, vision = graphs_for(model)
    rows: list[Row] = []
    options: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        towers = (("text", text, max(text_batches)), ("vision", vision, max(vision_batches)))
        for tower, graph, max_batch in towers:
            paths[tower] = Path(folder) / f"{tower}.onnx"
            started = time.perf_counter()
            export_onnx(graph, paths[tower], opset=18, max_batch=max_batch, simplify=True,
                        external_data_threshold=1 << 40)
            print(f"exported {tower} tower in {time.perf_counter() - started:.0f} s", flush=True)
        rows += measure("text", text, paths["text"], text_batches, args.threads, min_time, peak)
        rows += measure("vision", vision, paths["vision"], vision_batches, args.threads, min_time, peak)
        options += option_rows("text", text, paths["text"], 1, args.threads, min_time, peak)
        options += option_rows("vision", vision, paths["vision"], 1, args.threads, min_time, peak)
    measured = ", ".join(f"{name} {flops / 1e9:.1f}" for name, flops in peaks.items())
    table(rows, f"ViCLIP-B/16, fp32, {args.threads} threads; matmul peak {peak / 1e9:.1f} GFLOP/s "
                f"({measured})")
    table(options, "ONNX Runtime session options (batch 1)")
    result = verdicts(rows)
    print(f"\ntext batch 1: ONNX Runtime {result['text_b1_ort_over_eager']:.2f}x eager "
          f"(target {TEXT_SPEEDUP_TARGET}x: {'met' if result['text_b1_met'] else 'MISSED'})")
    print(f"vision: best {result['vision_best_peak_fraction']:.1%} of peak ({result['vision_best']}) "
          f"(target {VISION_PEAK_TARGET:.0%}: {'met' if result['vision_met'] else 'MISSED'})")
    print(f"torch runtime / ONNX Runtime on the CPU, batch 1: text "
          f"{result['torch_runtime_over_ort_text_b1']:.2f}x, "
          f"vision {result['torch_runtime_over_ort_vision_b1']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": machine(args.threads),
        "matmul_peak_flops": peaks,
        "rows": [asdict(r) for r in rows],
        "session_options": [asdict(r) for r in options],
        "verdicts": result,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
