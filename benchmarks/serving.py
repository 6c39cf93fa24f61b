"""Search service benchmark: latency and throughput of `Search` over gRPC, and where the time goes.

For each text tower (the demo model's, and ViCLIP-B/16's; random weights, speed does not depend on
them) it exports the model (`vidsearch export`, max batch 64), builds an index of n clip vectors
(`IVF{4·sqrt(n)},SQfp16`, the type the index picks by default at 1M; clustered unit vectors, one
video per 20 clips), starts `vidsearch serve` in its own process (embedded runtime, both cores,
`max_batch` set to the text tower's fastest batch size) and measures:

- text encoding alone: tokenize + one ONNX Runtime run of the text tower at batch 1 (p50);
- index search alone: `FaissClipIndex.search` of one query, top 10, SQLite rows included (p50);
- Search over gRPC at concurrency 1 (these three interleaved in rounds, so that load from other
  jobs on a shared machine hits all of them alike), with the server's own timings of each call
  (embedding, index search, handler total), then at 8 and 32 (a closed loop of gRPC futures
  from one client thread): p50, p99, requests/s. Every query text is new: the text cache never answers;
- the text tower's best batched throughput (batch 1 … 64; the mean of a sweep before and after the
  loads);
- the gRPC ceiling of this machine: an empty RPC (the health Check) in the same closed loop at
  concurrency 32 from the same client (the mean of a run before and after the loads).

Serving overhead = p50(Search, concurrency 1) − p50(text alone) − p50(index alone). The server's
timings split it: embedding in the server − text alone, index search in the server − index alone
(both include the caches the other part evicted), and the rest (gRPC, the handler around the two).
Targets (issue 7): overhead ≤ 2 ms; Search at concurrency 32 ≥ 80 % of the best batched throughput.
Search at concurrency 32 is also shown as a fraction of the combined bound
1 / (1 / RPC ceiling + 1 / best batched): what one machine could give if every request cost an empty
RPC plus its share of a best-size text batch and nothing else (client and server share the cores).

    .venv/bin/python benchmarks/serving.py --n 100000        # a few minutes on 2 cores
    .venv/bin/python benchmarks/serving.py                   # 1M clips per index (slow: two builds)
    python benchmarks/serving.py --device gpu --towers b16-text --n 10000000 --runtime KIND

GPU mode (`--device gpu`): the index is served on the GPU (`index_device = "gpu"`: FAISS moved with
index_cpu_to_gpu, the server refuses to start without GPU FAISS), the index probes search the same
index placed on the GPU, the index's batched peak (`ClipIndex.search_batch` q/s at its best batch of
1 … 256) is measured beside the text tower's, and Search at concurrency 32 is reported as a fraction of
min(text tower batched peak, index batched peak) (issue 15 target ≥ 0.8). `--runtime KIND` serves and
probes the text tower with that runtime kind (a GPU runtime), through `Runtime.embed_text_batch`.

Prints a table and writes benchmarks/results/serving.json.

`--ingest` measures Ingest instead (issue 15: where video is decoded): the demo model exported for
the CPU target (its repository has the `viclip_video_embed` ensemble), real H.264 files written
here, one Triton server (`make triton-env`) over the repository, and `vidsearch serve` three ways in
the same run: the embedded runtime (decoding and ONNX Runtime in the serving process), Triton with
the ensemble (encoded bytes and frame numbers sent; the server decodes), and Triton decoding
in-process (the runtime reads a copy of the repository without the ensemble, as with an older
export, and sends clip tensors). Each ingests the same files (`--ingest-concurrency` concurrent
Ingest calls, one file each) after a one-file warm-up, in `--ingest-rounds` rounds interleaved over
the three servers (running side by side); the median round's clips/s and MB of video/s.

    .venv/bin/python benchmarks/serving.py --ingest          # about 3 minutes on 2 cores

Prints a table and writes benchmarks/results/serving-ingest.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vidsearch.formats.model_repository import EMBEDDING_NORMALIZED, TOKENS
from vidsearch.index import (
    ClipRecord,
    FaissClipIndex,
    GpuPolicy,
    IndexConfig,
    OpenOptions,
    PageRequest,
    SearchOptions,
)
from vidsearch.runtime import RuntimeConfig, open_runtime, read_repository
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.proto.vidsearch.v1 import search_pb2_grpc as pb_grpc

RESULTS = Path(__file__).parent / "results" / "serving.json"
CLIPS_PER_VIDEO = 20
ADD_BATCH = 50_000
MAX_BATCH = 64
TINY_VISION = {"image_size": 32, "patch_size": 16, "num_frames": 8, "vision_width": 64, "vision_layers": 1,
               "vision_heads": 1}
TOWERS = {
    # the demo model's architecture (vidsearch/models/presets/viclip-demo.json)
    "demo": {"embed_dim": 128, "image_size": 64, "patch_size": 16, "num_frames": 8, "vision_width": 128,
             "vision_layers": 4, "vision_heads": 4, "context_length": 32, "vocab_size": 49408,
             "text_width": 128, "text_layers": 3, "text_heads": 4},
    # ViCLIP-B/16's text tower exactly; a tiny vision tower, which Search never runs
    "b16-text": {"embed_dim": 512, "context_length": 32, "vocab_size": 49408, "text_width": 512,
                 "text_layers": 12, "text_heads": 8, **TINY_VISION},
}
WORDS = ("red", "blue", "green", "circle", "square", "cross", "moves", "left", "grows", "still", "a", "the")


@dataclass
class Load:
    concurrency: int
    requests: int
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    errors: int


@dataclass
class Result:
    tower: str
    clips: int
    factory: str
    text_p50_ms: float
    index_p50_ms: float
    text_best_per_s: float
    text_best_batch: int
    text_per_s_by_batch: dict[int, float]
    served_embed_p50_ms: float = 0.0  # the server's own timings of the concurrency-1 Search calls
    served_search_p50_ms: float = 0.0
    outside_handler_p50_ms: float = 0.0  # Search latency at the client − the handler's total
    rpc_ceiling_per_s: float = 0.0
    device: str = "cpu"
    index_best_per_s: float = 0.0  # ClipIndex.search_batch at its best batch size (GPU mode)
    index_best_batch: int = 0
    index_build_s: float = 0.0  # 0 when the index came from --cache
    loads: list[Load] = field(default_factory=list)

    @property
    def c32_min_fraction(self) -> float:
        """Search at concurrency 32 over min(text tower batched peak, index batched peak)."""
        if not self.index_best_per_s:
            return 0.0
        return self.loads[-1].requests_per_s / min(self.text_best_per_s, self.index_best_per_s)

    @property
    def overhead_ms(self) -> float:
        return self.loads[0].p50_ms - self.text_p50_ms - self.index_p50_ms

    @property
    def c32_fraction(self) -> float:
        return self.loads[-1].requests_per_s / self.text_best_per_s

    @property
    def bound_per_s(self) -> float:
        return 1 / (1 / self.rpc_ceiling_per_s + 1 / self.text_best_per_s)

    @property
    def c32_bound_fraction(self) -> float:
        return self.loads[-1].requests_per_s / self.bound_per_s


def queries(count: int, seed: int) -> list[str]:
    """Distinct query texts (so the server's text cache never answers)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=6)) + f" {seed}-{i}" for i in range(count)]


def export(tower: str, out: Path) -> Path:
    """The tower's model repository in `out`, exported once: a finished one there is reused (--cache)."""
    import torch

    from vidsearch.export import ExportConfig, export_model
    from vidsearch.models import create_model

    repository = out / f"repository-{tower}"
    if repository.is_dir():
        return repository
    preset = out / f"bench-{tower}.json"
    preset.write_text(json.dumps({"family": "viclip", "config": TOWERS[tower]}))
    torch.manual_seed(0)
    checkpoint = out / f"bench-{tower}.pth"
    torch.save({"model": create_model(preset).state_dict()}, checkpoint)
    building = out / f".building-repository-{tower}"
    shutil.rmtree(building, ignore_errors=True)
    export_model(ExportConfig(str(preset), checkpoint, building, max_batch=MAX_BATCH))
    building.rename(repository)  # only a finished export gets the name a rerun looks for
    return repository


def clustered(n: int, dim: int, seed: int, device: str = "cpu") -> np.ndarray:
    """Unit vectors in videos of 20 near clips around 1,024 topics (what clip embeddings look like).
    On a GPU they are drawn there (10M × 512 in seconds; NumPy takes minutes on one core)."""
    if device == "gpu":
        return _clustered_cuda(n, dim, seed)
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((1024, dim), dtype=np.float32)
    videos = -(-n // CLIPS_PER_VIDEO)
    centres = topics[rng.integers(0, 1024, videos)]
    centres += rng.standard_normal((videos, dim), dtype=np.float32) * 0.5
    out = np.repeat(centres, CLIPS_PER_VIDEO, axis=0)[:n]
    out += rng.standard_normal(out.shape, dtype=np.float32) * 0.2
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def _clustered_cuda(n: int, dim: int, seed: int) -> np.ndarray:
    """`clustered`'s distribution drawn with PyTorch on the GPU (another random stream than NumPy's)."""
    import torch

    generator = torch.Generator(device="cuda").manual_seed(seed)
    topics = torch.randn(1024, dim, generator=generator, device="cuda")
    videos = -(-n // CLIPS_PER_VIDEO)
    picked = torch.randint(0, 1024, (videos,), generator=generator, device="cuda")
    centres = topics[picked] + 0.5 * torch.randn(videos, dim, generator=generator, device="cuda")
    out = centres.repeat_interleave(CLIPS_PER_VIDEO, dim=0)[:n]
    out += 0.2 * torch.randn(out.shape, generator=generator, device="cuda")
    out /= out.norm(dim=1, keepdim=True)
    host = out.cpu().numpy()
    del topics, centres, out
    torch.cuda.empty_cache()
    return host


def build_index(repository: Path, n: int, out: Path, gpu: GpuPolicy = GpuPolicy.NEVER) -> tuple[Path, str]:
    """An index of `n` clips over `repository`'s model in `out`; a finished one there is reused (--cache:
    at 10M clips the metadata rows alone take minutes)."""
    nlist = round(4 * math.sqrt(n))
    factory = f"IVF{nlist},SQfp16"
    directory = out / f"index-{repository.name}-{n}"
    if directory.is_dir():
        return directory, factory
    models = read_repository(RuntimeConfig(model_repository=repository)).facts(RuntimeConfig())
    vectors = clustered(n, models.dim, seed=1, device="gpu" if gpu is GpuPolicy.REQUIRE else "cpu")
    index = FaissClipIndex.create(IndexConfig(models.dim, models.model_name, models.model_checksum, factory,
                                              gpu=gpu))  # a GPU adds the vectors; saved in CPU form
    sample = vectors[np.random.default_rng(2).choice(n, size=min(n, max(65_536, 50 * nlist)), replace=False)]
    index.train(sample)
    for start in range(0, n, ADD_BATCH):
        rows = range(start, min(n, start + ADD_BATCH))
        records = [ClipRecord(f"c{i}", f"v{i // CLIPS_PER_VIDEO}", f"file:///v/{i // CLIPS_PER_VIDEO}.mp4",
                              (i % CLIPS_PER_VIDEO) * 4.0, (i % CLIPS_PER_VIDEO + 1) * 4.0, models.model_name)
                   for i in rows]
        index.add(records, vectors[start : start + len(records)])
    building = out / f".building-index-{repository.name}-{n}"
    shutil.rmtree(building, ignore_errors=True)
    index.save(building)
    index.close()
    building.rename(directory)
    return directory, factory


def start_server(repository: Path, index: Path, workdir: Path, max_batch: int,
                 threads: int, settings: str = "port = 0\n", runtime: str = "", sections: str = "",
                 name: str = "") -> tuple[subprocess.Popen[bytes], str]:
    """`vidsearch serve` in its own process; its address, read from its JSON log. `settings`: more
    top-level lines of its configuration file; `runtime`: more lines of its [runtime] section;
    `sections`: more sections."""
    name = name or repository.name
    config = workdir / f"server-{name}.toml"
    config.write_text(f'{settings}metrics_port = 0\nindex = "{index}"\nlog_level = "INFO"\n'
                      f'[runtime]\nmodel_repository = "{repository}"\nmax_batch = {max_batch}\n'
                      f"threads = {threads}\n{runtime}"
                      f"[limits]\nmax_concurrent_rpcs = 64\n{sections}")
    log = workdir / f"server-{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-c", "from vidsearch.cli import app; app()", "serve",
                                    "--config", str(config)], stderr=sink)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line)["message"].startswith("vidsearch serving"):
                return process, json.loads(line)["message"].split(" on ")[1].split(" ")[0]
        if process.poll() is not None:
            raise RuntimeError(f"the server exited while starting:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError("the server did not start within 300 s")


class Probes:
    """The three parts of a Search, each measurable alone, plus Search itself at concurrency 1.

    `text`: tokenize + one text-tower run at batch 1 through the embedded backend (the server's
    ONNX Runtime settings); `index`: one top-10 `FaissClipIndex.search`, SQLite rows included;
    `search`: one blocking gRPC Search call.
    """

    def __init__(self, repository: Path, index_dir: Path, threads: int, device: str = "cpu",
                 runtime_kind: str | None = None) -> None:
        from vidsearch.models.tokenizer import Tokenizer
        from vidsearch.runtime.embedded import EmbeddedBackend

        models = read_repository(RuntimeConfig(model_repository=repository))
        assert models.text is not None
        self.text_model = models.text
        self.backend = EmbeddedBackend(models, threads)
        self.runtime = None if runtime_kind is None else open_runtime(RuntimeConfig.model_validate(
            {"model_repository": repository, "kind": runtime_kind}))
        self.tokenizer = Tokenizer()
        self.output = [EMBEDDING_NORMALIZED]
        options = OpenOptions(read_only=True, gpu=GpuPolicy.for_device(device))  # the server writes
        self.index = FaissClipIndex.open(index_dir, options)
        self.channel: grpc.Channel | None = None

    def connect(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.SearchServiceStub(self.channel)

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.runtime is not None:
            return self.runtime.embed_text_batch(texts)
        tokens = {TOKENS: self.tokenizer(texts)}
        return self.backend.infer(self.text_model, tokens, self.output, None)[self.output[0]]

    def text(self, query: str) -> None:
        self.embed([query])

    def search_index(self, vector: np.ndarray) -> None:
        self.index.search(vector[None], SearchOptions(top_k=10))

    def search(self, query: str) -> pb.Timings:
        return self.stub.Search(pb.SearchRequest(query=query, top_k=10), timeout=60).timings

    def batched(self, seconds: float = 1.5) -> dict[int, float]:
        """Text-tower queries/s by batch size."""
        per_s = {}
        for batch in (1, 2, 4, 8, 16, 32, 64):
            texts = queries(batch, seed=6)
            self.embed(texts)
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                self.embed(texts)
                runs += 1
            per_s[batch] = runs * batch / (time.perf_counter() - started)
        return per_s

    def index_batched(self, seconds: float = 1.5) -> dict[int, float]:
        """`ClipIndex.search_batch` queries/s by batch size (top 10, pages as the service gets them)."""
        vectors = self.embed(queries(256, seed=9))
        per_s = {}
        for batch in (1, 8, 32, 64, 256):
            requests = [PageRequest(SearchOptions(top_k=10))] * batch
            self.index.search_batch(vectors[:batch], requests)
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                self.index.search_batch(vectors[:batch], requests)
                runs += 1
            per_s[batch] = runs * batch / (time.perf_counter() - started)
        return per_s

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.index.close()
        self.backend.close()
        if self.runtime is not None:
            self.runtime.close()


def interleaved(probes: Probes, rounds: int, per_round: int) -> dict[str, list[float]]:
    """Latencies (ms) of the three parts and of Search, measured in alternating rounds so that a
    change of load on a shared machine affects all of them alike; with the server's timings of each
    Search (`served_embed`, `served_search`) and the time outside its handler (`outside`)."""
    texts = queries(rounds * per_round, seed=5)
    vectors = probes.embed(queries(rounds * per_round, seed=7))
    times: dict[str, list[float]] = {name: [] for name in ("text", "index", "search", "served_embed",
                                                           "served_search", "outside")}
    for number in range(rounds):
        part = slice(number * per_round, (number + 1) * per_round)
        jobs = {"text": (probes.text, texts[part]), "index": (probes.search_index, list(vectors[part])),
                "search": (probes.search, [f"{t} (served)" for t in texts[part]])}
        for name, (call, inputs) in jobs.items():
            for item in inputs:
                started = time.perf_counter()
                timings = call(item)  # type: ignore[operator]
                times[name].append((time.perf_counter() - started) * 1000)
                if isinstance(timings, pb.Timings):
                    times["served_embed"].append(timings.embed_ms)
                    times["served_search"].append(timings.search_ms)
                    times["outside"].append(times[name][-1] - timings.total_ms)
    return times


def closed_loop(send: Callable[[int], grpc.Future], concurrency: int, requests: int
                ) -> tuple[list[float], int, float]:
    """`concurrency` calls in flight, a new one sent as each completes: latencies (s), errors, seconds."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    done = threading.Event()
    sent = [0]

    def next_call() -> None:
        with lock:
            if sent[0] == requests:
                return
            number = sent[0]
            sent[0] += 1
        started = time.perf_counter()
        send(number).add_done_callback(lambda f: finish(f, started))

    def finish(future: grpc.Future, started: float) -> None:
        with lock:
            latencies.append(time.perf_counter() - started)
            if future.exception() is not None:
                errors[0] += 1
            if len(latencies) == requests:
                done.set()
        next_call()

    began = time.perf_counter()
    for _ in range(concurrency):
        next_call()
    done.wait(600)
    return latencies, errors[0], time.perf_counter() - began


def load(address: str, concurrency: int, requests: int, seed: int) -> Load:
    """Search calls in a closed loop (every query text new)."""
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.SearchServiceStub(channel)
    texts = queries(requests, seed)
    latencies, errors, elapsed = closed_loop(
        lambda i: stub.Search.future(pb.SearchRequest(query=texts[i], top_k=10), timeout=60), concurrency,
        requests)
    channel.close()
    ms = np.asarray(latencies) * 1000
    return Load(concurrency, requests, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                requests / elapsed, errors)


def rpc_ceiling(address: str, concurrency: int = 32, requests: int = 4000) -> float:
    """Empty RPCs (health Check) per second in the same closed loop: what gRPC alone allows here."""
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    _, errors, elapsed = closed_loop(lambda i: stub.Check.future(request, timeout=60), concurrency, requests)
    channel.close()
    if errors:
        raise RuntimeError(f"{errors} of {requests} health checks failed")
    return requests / elapsed


def run(tower: str, n: int, requests: int, workdir: Path, threads: int, server_batch: int | None,
        device: str = "cpu", runtime_kind: str | None = None, cache: Path | None = None) -> Result:
    print(f"[{tower}] export …", flush=True)
    store = cache or workdir
    repository = export(tower, store)
    print(f"[{tower}] index of {n:,} clips …", flush=True)
    started = time.monotonic()
    index_dir, factory = build_index(repository, n, store, GpuPolicy.for_device(device))
    build_s = time.monotonic() - started
    print(f"[{tower}] built {factory} in {build_s:.0f} s; measuring …", flush=True)
    probes = Probes(repository, index_dir, threads, device, runtime_kind)
    before = probes.batched()
    best = server_batch or max(before, key=lambda b: before[b])
    # the server batches up to the size the text tower runs fastest at (the `max_batch` knob), unless
    # pinned: on a loaded machine the fastest size varies between runs, and with it Search's throughput
    process, address = start_server(repository, index_dir, workdir, best, threads,
                                    f'port = 0\nindex_device = "{device}"\n',
                                    f'kind = "{runtime_kind}"\n' if runtime_kind else "")
    try:
        probes.connect(address)
        load(address, 4, 100, seed=8)  # warm-up
        ceiling = rpc_ceiling(address)
        interleaved(probes, 1, 20)
        times = interleaved(probes, rounds=8, per_round=max(10, requests // 16))
        p50 = {name: float(np.percentile(values, 50)) for name, values in times.items()}
        result = Result(tower, n, factory, p50["text"], p50["index"], 0.0, best, before, p50["served_embed"],
                        p50["served_search"], p50["outside"])
        search = np.asarray(times["search"])
        result.loads.append(Load(1, len(search), float(np.percentile(search, 50)),
                                 float(np.percentile(search, 99)), 1000 / float(search.mean()), 0))
        for concurrency in (8, 32):
            result.loads.append(load(address, concurrency, requests, seed=10 + concurrency))
        result.rpc_ceiling_per_s = (ceiling + rpc_ceiling(address)) / 2
        after = probes.batched()
        result.text_per_s_by_batch = {b: (before[b] + after[b]) / 2 for b in before}
        result.text_best_batch = max(result.text_per_s_by_batch, key=lambda b: result.text_per_s_by_batch[b])
        result.text_best_per_s = result.text_per_s_by_batch[result.text_best_batch]
        result.device = device
        result.index_build_s = build_s
        if device == "gpu":
            by_batch = probes.index_batched()
            result.index_best_batch = max(by_batch, key=lambda b: by_batch[b])
            result.index_best_per_s = by_batch[result.index_best_batch]
    finally:
        probes.close()
        process.terminate()
        process.wait(30)
    return result


def report(results: list[Result]) -> None:
    print(f"\n{'tower':10} {'clips':>9} {'text p50':>9} {'index p50':>10} {'text best/s':>12} "
          f"{'c':>3} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for r in results:
        for i, point in enumerate(r.loads):
            head = (f"{r.tower:10} {r.clips:>9,} {r.text_p50_ms:>9.2f} {r.index_p50_ms:>10.2f} "
                    f"{r.text_best_per_s:>8.0f} (b{r.text_best_batch})") if i == 0 else " " * 56
            print(f"{head} {point.concurrency:>3} {point.p50_ms:>8.2f} {point.p99_ms:>8.2f} "
                  f"{point.requests_per_s:>8.1f}" + (f"  errors {point.errors}" if point.errors else ""))
        verdict_o = "met" if r.overhead_ms <= 2.0 else "missed"
        verdict_t = "met" if r.c32_fraction >= 0.8 else "missed"
        print(f"{'':10} overhead {r.overhead_ms:.2f} ms (target ≤ 2: {verdict_o}); concurrency 32 = "
              f"{100 * r.c32_fraction:.0f} % of the text tower's best batched throughput (target ≥ 80 %: "
              f"{verdict_t})")
        print(f"{'':10} overhead split (p50s): embedding in the server {r.served_embed_p50_ms:.2f} ms "
              f"({r.served_embed_p50_ms - r.text_p50_ms:+.2f} over alone), index search in the server "
              f"{r.served_search_p50_ms:.2f} ms ({r.served_search_p50_ms - r.index_p50_ms:+.2f}), "
              f"outside the handler {r.outside_handler_p50_ms:.2f} ms")
        print(f"{'':10} gRPC ceiling here (empty RPC, concurrency 32): {r.rpc_ceiling_per_s:.0f}/s; combined "
              f"bound 1/(1/ceiling + 1/text best) = {r.bound_per_s:.0f}/s; concurrency 32 = "
              f"{100 * r.c32_bound_fraction:.0f} % of it")
        if r.index_best_per_s:
            verdict = "met" if r.c32_min_fraction >= 0.8 else "missed"
            print(f"{'':10} {r.device}: index batched peak {r.index_best_per_s:.0f}/s "
                  f"(b{r.index_best_batch}); "
                  f"concurrency 32 = {r.c32_min_fraction:.2f} of min(text peak, index peak) (target ≥ 0.8: "
                  f"{verdict})")


INGEST_RESULTS = Path(__file__).parent / "results" / "serving-ingest.json"
SCENE_S = 2.0  # a synthetic scene: SynthSpec's 20 frames at 10 fps


@dataclass
class IngestPoint:
    runtime: str
    videos: int
    clips: int
    seconds: float
    clips_per_s: float
    video_mb_per_s: float


def ingest_videos(folder: Path, count: int, seconds: float, size: int) -> list[Path]:
    """`count` H.264 files of `seconds` each, `size`² pixels, of the synthetic scenes."""
    from vidsearch.training.synthetic import SynthSpec, plan, scene_frames, write_mp4

    scenes = max(1, round(seconds / SCENE_S))
    spec = SynthSpec(n=max(2, count * scenes), seed=5, size=size)
    planned = plan(spec)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        frames = np.concatenate([scene_frames(spec, planned[number * scenes + k]) for k in range(scenes)])
        path = folder / f"video-{number}.mp4"
        write_mp4(path, frames, spec.fps, spec.crf)
        paths.append(path)
    return paths


def ingest_once(address: str, videos: list[Path], concurrency: int, replace: bool) -> tuple[int, float]:
    """Ingest every file (`concurrency` calls at a time, one file each); clips added and seconds."""
    from concurrent.futures import ThreadPoolExecutor

    from vidsearch.client import SearchClient

    with SearchClient(address) as client:
        def one(path: Path) -> int:
            (outcome,) = client.ingest([path.name], replace=replace, clip_length_s=SCENE_S, timeout_s=600)
            if outcome.error_code:
                raise RuntimeError(f"ingest {path.name}: {outcome.error_code} {outcome.error}")
            return outcome.clips

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            clips = sum(pool.map(one, videos))
        return clips, time.perf_counter() - started


def run_ingest(args: argparse.Namespace, workdir: Path) -> list[IngestPoint]:
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ (the Triton server launcher)
    from tools.triton_server import TritonServer, find_triton

    repository = export("demo", workdir)
    older = workdir / "repository-demo-without-ensemble"
    shutil.copytree(repository, older,
                    ignore=shutil.ignore_patterns("video_preprocess", "viclip_video_embed"))
    videos = ingest_videos(workdir / "videos", args.ingest_videos, args.ingest_seconds, args.ingest_size)
    megabytes = sum(v.stat().st_size for v in videos) / 1e6
    env = Path(__file__).resolve().parents[1] / ".venv-triton"
    points = []
    with TritonServer(find_triton(env), repository, startup_timeout_s=180) as triton:
        on_triton = f'kind = "triton"\ntriton_url = "{triton.url}"\n'
        runtimes = {
            "embedded": (repository, ""),
            "triton, ensemble (server decodes)": (repository, on_triton),
            "triton, in-process decode": (older, on_triton),
        }
        settings = f'port = 0\nallowed_roots = ["{workdir / "videos"}"]\n'
        servers = {}
        try:
            for number, (label, (repo, runtime)) in enumerate(runtimes.items()):
                servers[label] = start_server(repo, workdir / f"index-{number}", workdir, MAX_BATCH,
                                              args.threads, settings, runtime, "[http]\nenabled = false\n",
                                              name=f"ingest-{number}")
                ingest_once(servers[label][1], videos[:1], 1, replace=False)  # warm-up, the index's first add
            times: dict[str, list[float]] = {label: [] for label in runtimes}
            for round_ in range(args.ingest_rounds):  # interleaved: a change of load hits all alike
                for label, (_, address) in servers.items():
                    clips, seconds = ingest_once(address, videos, args.ingest_concurrency, replace=True)
                    times[label].append(seconds)
                    print(f"round {round_}, {label}: {clips} clips in {seconds:.2f} s", flush=True)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)
        for label, measured in times.items():
            seconds = statistics.median(measured)
            points.append(IngestPoint(label, len(videos), clips, seconds, clips / seconds,
                                      megabytes / seconds))
    return points


def report_ingest(points: list[IngestPoint], args: argparse.Namespace) -> None:
    print(f"\nIngest, demo model (64² × 8 frames), {points[0].videos} H.264 files of "
          f"{args.ingest_seconds:g} s at {args.ingest_size}², clips of {SCENE_S:g} s, "
          f"{args.ingest_concurrency} concurrent calls, median of {args.ingest_rounds} interleaved rounds")
    print(f"{'runtime':36} {'clips':>6} {'seconds':>8} {'clips/s':>8} {'video MB/s':>11}")
    for p in points:
        print(f"{p.runtime:36} {p.clips:>6} {p.seconds:>8.2f} {p.clips_per_s:>8.1f} "
              f"{p.video_mb_per_s:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest", action="store_true", help="measure Ingest on three runtimes instead")
    parser.add_argument("--ingest-videos", type=int, default=8)
    parser.add_argument("--ingest-seconds", type=float, default=20.0)
    parser.add_argument("--ingest-size", type=int, default=480, help="frame width and height, pixels")
    parser.add_argument("--ingest-concurrency", type=int, default=2)
    parser.add_argument("--ingest-rounds", type=int, default=3, help="the median of these rounds is shown")
    parser.add_argument("--n", type=int, default=1_000_000, help="clips per index")
    parser.add_argument("--requests", type=int, default=400, help="Search calls per concurrency level")
    parser.add_argument("--towers", default="demo,b16-text", help="comma-separated: demo, b16-text")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: one per core)")
    parser.add_argument("--server-batch", type=int, default=None,
                        help="the server's max_batch (default: the fastest text batch size, measured)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep exports and indexes here and reuse them on the next run (default: none)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where the index is served")
    parser.add_argument("--runtime", default=None, help="runtime kind of the server and the text probes "
                        "(default: the embedded ONNX Runtime)")
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg(),
               "threads": args.threads}
    if args.ingest:
        with tempfile.TemporaryDirectory(prefix="vidsearch-bench-") as tmp:
            points = run_ingest(args, Path(tmp))
        report_ingest(points, args)
        out = INGEST_RESULTS if args.out == RESULTS else args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k.startswith("ingest_")}
        out.write_text(json.dumps({"machine": {**machine, "load_after": os.getloadavg()},
                                   "settings": settings, "points": [asdict(p) for p in points]}, indent=2))
        print(f"\nwrote {out}")
        return
    results = []
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vidsearch-bench-") as tmp:
        for tower in args.towers.split(","):
            results.append(run(tower, args.n, args.requests, Path(tmp), args.threads, args.server_batch,
                               args.device, args.runtime, args.cache))
    report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine,
        "results": [{**asdict(r), "overhead_ms": r.overhead_ms, "c32_fraction": r.c32_fraction,
                     "bound_per_s": r.bound_per_s, "c32_bound_fraction": r.c32_bound_fraction,
                     "c32_min_fraction": r.c32_min_fraction}
                    for r in results],
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
