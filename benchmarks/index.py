"""Clip index benchmark: build time, memory, queries/s and recall@10 per index type.

Data: n unit vectors from a three-level Gaussian mixture shaped like clip embeddings (a mean direction
shared by all, topics, videos of 20 clips); queries are fresh clips of videos not in the index.
Recall@10 is measured against exact search (a clip tied with the 10th within 1e-5 counts as found).
Every number goes through `FaissClipIndex` (SQLite metadata included); `faiss_qps_b1` is FAISS behind
vidsearch's filtered searcher, for comparison.

The serving ratios compare the project with raw FAISS (`index.search` with the same parameters) on the
same index: `search_qps_b1` is one query at a time through `ClipIndex.search` (pages, as the service
answers), `batch_qps_b32` batches of 32 through `ClipIndex.search_batch` (what the Search batcher
calls), `ratio_b1` and `ratio_b32` divide them by raw FAISS at batch 1 and 32. `overhead_us_b1` is the
CPU time per single query spent outside the FAISS call (thread time, so other load hardly moves it).

    python benchmarks/index.py --n 200000 --factory HNSW32,Flat --seconds 3   # the ratios, a few minutes
    python benchmarks/index.py --device gpu    # on a GPU machine: the index placed with index_cpu_to_gpu

    python benchmarks/index.py                 # 1M x 512, several minutes on 2 cores
    python benchmarks/index.py --n 100000      # quick run
    python benchmarks/index.py --backend milvus --n 200000   # FAISS HNSW beside a real Milvus HNSW

With `--backend milvus` the same data and queries go to FAISS (`--factory`, default HNSW32,Flat) and to
`MilvusClipIndex` on a standalone Milvus started for the run (`LocalMilvus`, 127.0.0.1, data in a temp
folder): build time (insert, flush, index built), the server's memory, recall@10 and queries/s at the
same efSearch values. Milvus's numbers include the gRPC hop and the server's own threads.
`--milvus-segment-mb` sets the size at which Milvus seals a segment (see `LocalMilvus`): a search pays a
fixed cost per segment, so a 1M collection in the template's many segments answers slower than in one.
The Milvus/FAISS table divides each Milvus number by its FAISS twin's at the same setting.

`qps_b1_clients` is the serving view of batch 1: `--clients` threads each send one query at a time,
as concurrent Search requests do, through the service's own batching (`TextSearcher`, the text tower
left out), so queries that arrive while a search runs go together in the next one; an index on a
server (Milvus) has `concurrent_searches` batches in flight (`--milvus-concurrent-searches`, 4 as
`vidsearch serve`), an index in this process one.

    python benchmarks/index.py --backend milvus --n 1000000 --factory IVF1024,Flat \
        --nprobe 2 --nprobe 8 --milvus-segment-mb 8192          # Milvus against FAISS at 1M, ~15 min

Prints a table and writes benchmarks/results/index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from vidsearch.errors import ConfigError
from vidsearch.index import (
    ClipRecord,
    FaissClipIndex,
    GpuPolicy,
    IndexConfig,
    PageRequest,
    SearchFilter,
    SearchOptions,
    Tuning,
)
from vidsearch.index.factory import choose_factory, plan_index
from vidsearch.index.filters import BLAS_MIN_QUERIES, FilteredSearcher, omp_threads, search_parameters
from vidsearch.index.milvus import (
    LocalMilvus,
    MilvusClipIndex,
    MilvusCollectionConfig,
    MilvusIndexSpec,
    MilvusTarget,
)
from vidsearch.serving.text_search import TextQuery, TextSearcher

CLIPS_PER_VIDEO = 20
TOPICS = 1024
K = 10
TIE = 1e-5  # inner products this close to the K-th true neighbour's count as tied with it
ADD_BATCH = 50_000
MODEL = "bench"


@dataclass
class Point:
    setting: str
    recall_at_10: float
    qps_b1: float
    qps_b1_2threads: float
    qps_b64: float
    faiss_qps_b1: float
    search_qps_b1: float = 0.0
    raw_qps_b1: float = 0.0
    batch_qps_b32: float = 0.0
    raw_qps_b32: float = 0.0
    overhead_us_b1: float = 0.0
    qps_b1_clients: float = 0.0

    @property
    def ratio_b1(self) -> float:
        return self.search_qps_b1 / self.raw_qps_b1 if self.raw_qps_b1 else 0.0

    @property
    def ratio_b32(self) -> float:
        return self.batch_qps_b32 / self.raw_qps_b32 if self.raw_qps_b32 else 0.0


@dataclass
class Result:
    factory: str
    build_s: float
    train_s: float
    rss_delta_mb: float
    index_file_mb: float
    points: list[Point] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    """Milvus only: rows of each loaded segment (each has its own index; a search visits all)."""
    twin_of: str = ""
    """Milvus only: the FAISS factory this index is the twin of."""
    segments_after: list[int] = field(default_factory=list)
    """Milvus only: the loaded segments after the measurements; where they differ from `segments`,
    Milvus compacted during them and the numbers are of neither layout."""


def _unit(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def make_data(n: int, dim: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Base clips and query clips (from videos that are not in the base)."""
    rng = np.random.default_rng(seed)
    mean = _unit(rng.standard_normal((1, dim), dtype=np.float32))[0] * 0.5
    topics = _unit(rng.standard_normal((TOPICS, dim), dtype=np.float32))
    topic_weights = 1.0 / np.arange(1, TOPICS + 1) ** 0.5
    topic_weights /= topic_weights.sum()

    def clips(count: int) -> np.ndarray:
        videos = -(-count // CLIPS_PER_VIDEO)
        topic = rng.choice(TOPICS, size=videos, p=topic_weights)
        spread = rng.standard_normal((videos, dim), dtype=np.float32) * (0.8 / np.sqrt(dim))
        centres = _unit(mean + topics[topic] + spread)
        out = np.empty((count, dim), dtype=np.float32)
        for start in range(0, count, 100_000):
            stop = min(count, start + 100_000)
            owner = np.arange(start, stop) // CLIPS_PER_VIDEO
            jitter = rng.standard_normal((stop - start, dim), dtype=np.float32) * (0.35 / np.sqrt(dim))
            out[start:stop] = _unit(centres[owner] + jitter)
        return out

    return clips(n), clips(queries)


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def true_neighbours(base: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    """Each query's true top K by brute force (reading `base` in place, no second copy of a 1M × 512
    array), with every clip that ties the K-th within TIE: float32 sums taken in another order swap
    near-ties (3,000 clips: the 10th and 11th of one query 4e-8 apart), and finding either is right."""
    faiss.cvar.distance_compute_blas_threshold = 16
    scores, ids = faiss.knn(queries, base, 2 * K, metric=faiss.METRIC_INNER_PRODUCT)
    return [set(row_ids[row_scores >= row_scores[K - 1] - TIE].tolist())
            for row_scores, row_ids in zip(scores, ids, strict=True)]


def records(start: int, stop: int) -> list[ClipRecord]:
    return [
        ClipRecord(
            clip_id=f"c{i}",
            video_id=f"v{i // CLIPS_PER_VIDEO}",
            uri=f"s3://bench/v{i // CLIPS_PER_VIDEO}.mp4",
            start_s=4.0 * (i % CLIPS_PER_VIDEO),
            end_s=4.0 * (i % CLIPS_PER_VIDEO) + 4.0,
            model=MODEL,
        )
        for i in range(start, stop)
    ]


def build(
    base: np.ndarray, factory: str, ef_construction: int, gpu: GpuPolicy = GpuPolicy.NEVER
) -> tuple[FaissClipIndex, float, float, float]:
    n, dim = base.shape
    before = rss_anon_mb()
    started = time.perf_counter()
    index = FaissClipIndex.create(IndexConfig(dim=dim, model=MODEL, factory=factory, gpu=gpu))
    outer = faiss.downcast_index(index.faiss_index)  # an IDMap (on the CPU) around the real index
    inner = faiss.downcast_index(outer.index) if hasattr(outer, "index") else outer
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efConstruction = ef_construction
    train_s = 0.0
    if not index.is_trained:
        size = plan_index(n, dim, factory).train_size
        sample = base[np.random.default_rng(1).choice(n, size=size, replace=False)]
        index.train(sample)
        del sample
        train_s = time.perf_counter() - started
    for start in range(0, n, ADD_BATCH):
        stop = min(n, start + ADD_BATCH)
        index.add(records(start, stop), base[start:stop])
    return index, time.perf_counter() - started, train_s, rss_anon_mb() - before


def rate(run_one: Callable[[int], object], total: int, batch: int, seconds: float) -> float:
    """Queries per second of run_one(offset) over consecutive batches: the best of three windows of
    seconds / 3 each, so that a burst of other work on a shared machine does not decide the number."""
    best = 0.0
    offset = 0
    for _ in range(3):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            run_one(offset)
            done += batch
            offset = (offset + batch) % (total - batch + 1)
        best = max(best, done / (time.perf_counter() - started))
    return best


class QueryRows:
    """A stand-in text tower for `TextSearcher`: the text "i" embeds as query row i."""

    def __init__(self, queries: np.ndarray) -> None:
        self.queries = queries

    def embed_text_batch(self, texts: list[str]) -> np.ndarray:
        return self.queries[[int(text) for text in texts]]


def clients_rate(
    index: FaissClipIndex | MilvusClipIndex, queries: np.ndarray, tuning: Tuning, clients: int, seconds: float
) -> float:
    """Queries per second of `clients` threads that each send one query at a time through the Search
    service's own batching (`TextSearcher`: `ClipIndex.search_batch` on one OpenMP thread, with the
    index's `concurrent_searches` batches in flight), the text tower left out."""
    options = SearchOptions(top_k=K, tuning=tuning)
    searcher = TextSearcher(QueryRows(queries), index, max_batch=64)  # QueryRows: the one method it calls
    done = [0] * clients
    failures: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(number: int) -> None:
        offset = number
        start.wait()
        try:
            while time.perf_counter() < stop_at[0]:
                row = offset % len(queries)
                answer = searcher.search(TextQuery(str(row), options, None, time.perf_counter()), None)
                if not answer.page.hits:
                    raise RuntimeError(f"query {row} found nothing")
                done[number] += 1
                offset += clients
        except BaseException as error:  # handed to the caller below
            failures.append(error)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for worker in workers:
        worker.start()
    stop_at[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    searcher.close()
    if failures:
        raise failures[0]
    return sum(done) / elapsed


def measure(
    index: FaissClipIndex | MilvusClipIndex,
    queries: np.ndarray,
    truth: list[set[int]],
    tuning: Tuning,
    seconds: float,
    clients: int = 0,
) -> Point:
    no_filter = SearchFilter()
    hits = index.search_hits(queries, K, no_filter, tuning)
    found = [{int(h.clip.clip_id[1:]) for h in row} for row in hits]
    recall = float(np.mean([len(f & t) / K for f, t in zip(found, truth, strict=True)]))
    nq = queries.shape[0]

    def one(offset: int) -> None:
        index.search_hits(queries[offset : offset + 1], K, no_filter, tuning)

    def sixty_four(offset: int) -> None:
        index.search_hits(queries[offset : offset + 64], K, no_filter, tuning)

    searcher = FilteredSearcher(index.faiss_index) if isinstance(index, FaissClipIndex) else None

    def bare(offset: int) -> None:
        assert searcher is not None
        searcher.search(queries[offset : offset + 1], K, None, tuning)

    qps_b1 = rate(one, nq, 1, seconds)
    serving = serving_ratios(index, queries, tuning, seconds) if isinstance(index, FaissClipIndex) else {}
    per_thread: list[float] = []
    workers = [
        threading.Thread(target=lambda: per_thread.append(rate(one, nq, 1, seconds))) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    setting = "-"
    if tuning.nprobe or tuning.ef_search:
        setting = f"nprobe={tuning.nprobe}" if tuning.nprobe else f"efSearch={tuning.ef_search}"
    return Point(
        setting=setting,
        recall_at_10=round(recall, 4),
        qps_b1=round(qps_b1),
        qps_b1_2threads=round(sum(per_thread)),
        qps_b64=round(rate(sixty_four, nq, 64, seconds)),
        faiss_qps_b1=round(rate(bare, nq, 1, seconds)) if searcher is not None else 0,
        qps_b1_clients=round(clients_rate(index, queries, tuning, clients, seconds)) if clients else 0,
        **serving,
    )


def serving_ratios(
    index: FaissClipIndex, queries: np.ndarray, tuning: Tuning, seconds: float
) -> dict[str, float]:
    """The project's search (pages) against raw FAISS with the same parameters, at batch 1 and 32."""
    raw = index.faiss_index
    wrapped = search_parameters(raw, None, tuning)
    params = {} if wrapped is None else {"params": wrapped.params}
    options = SearchOptions(top_k=K, tuning=tuning)
    nq = queries.shape[0]
    faiss.cvar.distance_compute_blas_threshold = BLAS_MIN_QUERIES * queries.shape[1]

    def raw_search(offset: int, batch: int) -> None:
        raw.search(queries[offset : offset + batch], K, **params)

    def project(offset: int, batch: int) -> None:
        index.search_batch(queries[offset : offset + batch], [PageRequest(options)] * batch)

    with omp_threads(1):
        cpu_raw = cpu_us_per_query(lambda i: raw_search(i, 1), nq)
        cpu_project = cpu_us_per_query(lambda i: project(i, 1), nq)
        return {
            "search_qps_b1": round(rate(lambda i: project(i, 1), nq, 1, seconds)),
            "raw_qps_b1": round(rate(lambda i: raw_search(i, 1), nq, 1, seconds)),
            "batch_qps_b32": round(rate(lambda i: project(i, 32), nq, 32, seconds)),
            "raw_qps_b32": round(rate(lambda i: raw_search(i, 32), nq, 32, seconds)),
            "overhead_us_b1": round(cpu_project - cpu_raw, 1),
        }


def cpu_us_per_query(run_one: Callable[[int], object], total: int, repeats: int = 5) -> float:
    """CPU time (this thread's) per call of run_one over all offsets: the least of a few passes."""
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time_ns()
        for offset in range(total):
            run_one(offset)
        best = min(best, (time.thread_time_ns() - started) / total / 1000)
    return best


def sweep(factory: str, ef: list[int], nprobe: list[int]) -> list[Tuning]:
    if "IVF" in factory:
        return [Tuning(nprobe=p) for p in nprobe]
    if "HNSW" in factory:
        return [Tuning(ef_search=e) for e in ef]
    return [Tuning()]


def index_file_mb(index: FaissClipIndex) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        faiss.write_index(index.faiss_index, str(Path(tmp) / "index.faiss"))
        return (Path(tmp) / "index.faiss").stat().st_size / 2**20


MILVUS_INSERT_BATCH = 10_000
_IVF = re.compile(r"IVF(\d+),(Flat|SQ8)")


def milvus_spec(factory: str, ef_construction: int) -> MilvusIndexSpec:
    """The Milvus index of the same family and parameters as a FAISS factory string, so the two sides
    compare like with like: HNSW{M},Flat → HNSW (M, efConstruction), IVF{n},Flat → IVF_FLAT and
    IVF{n},SQ8 → IVF_SQ8 (nlist n), Flat → FLAT. ConfigError for a factory Milvus has no twin of."""
    if factory == "Flat":
        return MilvusIndexSpec("FLAT")
    if hnsw := re.fullmatch(r"HNSW(\d+)(?:,Flat)?", factory):
        return MilvusIndexSpec("HNSW", {"M": int(hnsw.group(1)), "efConstruction": ef_construction})
    if ivf := _IVF.fullmatch(factory):
        kind = "IVF_FLAT" if ivf.group(2) == "Flat" else "IVF_SQ8"
        return MilvusIndexSpec(kind, {"nlist": int(ivf.group(1))})
    raise ConfigError(
        f"FAISS factory {factory!r} has no Milvus twin: use HNSW<M>,Flat, IVF<n>,Flat|SQ8 or Flat"
    )


def milvus_name(spec: MilvusIndexSpec) -> str:
    return "milvus " + " ".join([spec.index_type, *(f"{k}={v}" for k, v in spec.build.items())])


def milvus_target(server_uri: str, collection: str, args: argparse.Namespace) -> MilvusTarget:
    return MilvusTarget(uri=server_uri, collection=collection, timeout_s=600.0,
                        concurrent_searches=args.milvus_concurrent_searches)


def refuse_bad_milvus_options(parser: argparse.ArgumentParser, factories: list[str],
                              args: argparse.Namespace) -> None:
    """Before any work: a factory without a Milvus twin, or target options Milvus would refuse."""
    try:
        for factory in factories:
            milvus_spec(factory, args.ef_construction)
        milvus_target("http://127.0.0.1:19530", "bench_0", args)
    except ConfigError as exc:
        parser.error(str(exc))


def build_milvus(server: LocalMilvus, base: np.ndarray, spec: MilvusIndexSpec, target: MilvusTarget
                 ) -> tuple[MilvusClipIndex, float, float]:  # fmt: skip
    """A new collection at `target` holding `base` with the index `spec`: inserted in batches, flushed
    and indexed; (index, seconds, +MB of the server)."""
    n, dim = base.shape
    before = server.memory_mb()
    started = time.perf_counter()
    index = MilvusClipIndex.create(target, MilvusCollectionConfig(dim=dim, model=MODEL, index=spec))
    for start in range(0, n, MILVUS_INSERT_BATCH):
        stop = min(n, start + MILVUS_INSERT_BATCH)
        index.add(records(start, stop), base[start:stop])
        if stop % 100_000 == 0:
            print(f"  milvus: {stop} inserted in {time.perf_counter() - started:.0f} s", flush=True)
    index.finish_bulk_load()
    return index, time.perf_counter() - started, server.memory_mb() - before


def run_milvus(
    base: np.ndarray,
    queries: np.ndarray,
    truth: list[set[int]],
    factories: list[str],
    args: argparse.Namespace,
) -> list[Result]:
    """Each factory's Milvus twin on one standalone server, measured at the same settings as FAISS.
    A collection is dropped before the next is built, so each memory delta is its own."""
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="milvus-bench-") as data,
        LocalMilvus(Path(data), segment_mb=args.milvus_segment_mb) as server,
    ):
        for number, factory in enumerate(factories):
            spec = milvus_spec(factory, args.ef_construction)
            target = milvus_target(server.uri, f"bench_{number}", args)
            index, build_s, rss_mb = build_milvus(server, base, spec, target)
            name = milvus_name(spec)
            segments = index.loaded_segments()
            print(f"{name}: built in {build_s:.1f} s, server +{rss_mb:.0f} MB, segments {segments}",
                  flush=True)  # fmt: skip
            result = Result(
                name, round(build_s, 1), 0.0, round(rss_mb), 0, segments=segments, twin_of=factory
            )
            for tuning in sweep(factory, args.ef, args.nprobe):
                result.points.append(measure(index, queries, truth, tuning, args.seconds, args.clients))
                print("   ", result.points[-1], flush=True)
            result.segments_after = index.loaded_segments()
            index.drop()
            index.close()
            results.append(result)
    return results


def print_like_with_like(results: list[Result]) -> None:
    print("like with like: each Milvus index is the FAISS factory's twin (same family and parameters,")
    print("searched at the same efSearch/nprobe); Milvus builds one index per segment and merges them:")
    for res in results:
        if res.segments:
            print(f"  {res.factory}: {len(res.segments)} segments of {res.segments} rows")
        if res.segments_after != res.segments:
            print(f"  WARNING: {res.factory} had segments of {res.segments_after} rows at the end: Milvus "
                  "compacted them during the measurement, which disturbed it")  # fmt: skip


VERSUS = ("qps_b1", "qps_b1_clients", "qps_b64")


def versus(results: list[Result]) -> list[dict[str, object]]:
    """Each Milvus point beside its FAISS twin's at the same setting: both recalls and the ratio
    Milvus / FAISS of each throughput in `VERSUS` (0 where FAISS measured none)."""
    faiss_points = {(r.factory, p.setting): p for r in results if not r.twin_of for p in r.points}
    rows: list[dict[str, object]] = []
    for res in results:
        for point in res.points:
            twin = faiss_points.get((res.twin_of, point.setting))
            if not res.twin_of or twin is None:
                continue
            row: dict[str, object] = {
                "milvus": res.factory, "faiss": res.twin_of, "setting": point.setting,
                "recall_milvus": point.recall_at_10, "recall_faiss": twin.recall_at_10,
            }  # fmt: skip
            for name in VERSUS:
                theirs = getattr(twin, name)
                row[f"ratio_{name}"] = round(getattr(point, name) / theirs, 3) if theirs else 0.0
            rows.append(row)
    return rows


def print_versus(rows: list[dict[str, object]]) -> None:
    print("\nMilvus / FAISS at the same setting (ratios of queries/s):")
    print(f"{'faiss index':<20}{'setting':<14}{'recall M':>9}{'recall F':>9}"
          + "".join(f"{name:>16}" for name in VERSUS))  # fmt: skip
    for row in rows:
        print(f"{row['faiss']!s:<20}{row['setting']!s:<14}{row['recall_milvus']:>9.4f}{row['recall_faiss']:>9.4f}"
              + "".join(f"{row[f'ratio_{name}']:>16.2f}" for name in VERSUS))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--factory", action="append", help="FAISS factory string to measure (repeatable; default: a set)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="time spent per throughput number")
    parser.add_argument(
        "--backend", choices=("faiss", "milvus"), default="faiss", help="milvus: FAISS beside a real Milvus"
    )
    parser.add_argument(
        "--ef-construction", type=int, default=40, help="HNSW build depth, FAISS and Milvus alike [40]"
    )
    parser.add_argument(
        "--ef", type=int, action="append", help="HNSW efSearch values to measure (repeatable) [32..256]"
    )
    parser.add_argument(
        "--nprobe", type=int, action="append", help="IVF nprobe values to measure (repeatable) [8..64]"
    )
    parser.add_argument("--out", type=Path, help="JSON results [results/index.json, index_milvus.json]")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="gpu: FAISS on the GPU")
    parser.add_argument(
        "--clients", type=int, default=16, help="threads of qps_b1_clients, one query each at a time [16]"
    )
    parser.add_argument(
        "--milvus-segment-mb", type=int, help="MB at which Milvus seals a segment [23%% of 512]"
    )
    parser.add_argument(
        "--milvus-concurrent-searches", type=int, default=MilvusTarget.concurrent_searches,
        help="search batches kept in flight to Milvus by qps_b1_clients (MilvusTarget) [4]",
    )
    args = parser.parse_args()
    args.ef = args.ef or [32, 64, 128, 256]
    args.nprobe = args.nprobe or [8, 16, 32, 64]
    name = "index.json" if args.backend == "faiss" else "index_milvus.json"
    args.out = args.out or Path(__file__).parent / "results" / name
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gpu = GpuPolicy.for_device(args.device)
    auto = choose_factory(args.n, args.dim, gpu=args.device == "gpu")
    nlist = plan_index(args.n, args.dim, auto).params.get("nlist", 1024)
    defaults = [
        auto,
        f"IVF{nlist},SQ8",
        f"IVF{nlist},SQfp16",
        "HNSW32,Flat",
        f"IVF{nlist},PQ{args.dim // 4}x4fs",
        "Flat",
    ]
    if args.backend == "milvus":
        defaults = ["HNSW32,Flat"]
    factories = list(dict.fromkeys(args.factory or defaults))
    if args.backend == "milvus":
        refuse_bad_milvus_options(parser, factories, args)

    started = time.perf_counter()
    base, queries = make_data(args.n, args.dim, args.queries, seed=0)
    print(f"data: {args.n} x {args.dim} in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    truth = true_neighbours(base, queries)
    print(
        f"exact ground truth for {args.queries} queries in {time.perf_counter() - started:.1f} s", flush=True
    )

    results: list[Result] = []
    for factory in factories:
        index, build_s, train_s, rss_mb = build(base, factory, args.ef_construction, gpu)
        result = Result(
            factory, round(build_s, 1), round(train_s, 1), round(rss_mb), round(index_file_mb(index))
        )
        print(f"{factory}: built in {build_s:.1f} s (training {train_s:.1f} s), +{rss_mb:.0f} MB", flush=True)
        for tuning in sweep(factory, args.ef, args.nprobe):
            result.points.append(measure(index, queries, truth, tuning, args.seconds, args.clients))
            print("   ", result.points[-1], flush=True)
        index.close()
        del index
        results.append(result)
    if args.backend == "milvus":
        results.extend(run_milvus(base, queries, truth, factories, args))

    header = (
        f"{'index':<34}{'setting':<14}{'recall@10':>10}{'qps b1':>9}{'b1 x2thr':>10}{'qps b64':>9}"
        f"{'faiss b1':>10}{'b1 clients':>11}{'build s':>9}{'mem MB':>8}{'file MB':>9}"
        f"{'search b1':>10}{'raw b1':>8}{'ratio':>6}{'batch b32':>10}{'raw b32':>8}{'ratio':>6}{'+us b1':>7}"
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.n} x {args.dim}, {args.queries} queries, {faiss.omp_get_max_threads()} threads, load {load}"
    )
    print(header)
    for res in results:
        for point in res.points:
            print(
                f"{res.factory:<34}{point.setting:<14}{point.recall_at_10:>10.4f}{point.qps_b1:>9.0f}"
                f"{point.qps_b1_2threads:>10.0f}{point.qps_b64:>9.0f}{point.faiss_qps_b1:>10.0f}{point.qps_b1_clients:>11.0f}"
                f"{res.build_s:>9.1f}{res.rss_delta_mb:>8.0f}{res.index_file_mb:>9.0f}"
                f"{point.search_qps_b1:>10.0f}{point.raw_qps_b1:>8.0f}{point.ratio_b1:>6.2f}"
                f"{point.batch_qps_b32:>10.0f}{point.raw_qps_b32:>8.0f}{point.ratio_b32:>6.2f}"
                f"{point.overhead_us_b1:>7.0f}"
            )
    if args.backend == "milvus":
        print_like_with_like(results)
        print_versus(versus(results))
    payload = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "threads": faiss.omp_get_max_threads(),
        "ef_construction": args.ef_construction,
        "faiss": faiss.__version__,
        "machine": platform.processor() or platform.machine(),
        "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()],
        "device": args.device,
        "results": [
            {**asdict(r), "points": [{**asdict(p), "ratio_b1": p.ratio_b1, "ratio_b32": p.ratio_b32}
                                     for p in r.points]}
            for r in results
        ],
    }
    payload["backend"] = args.backend
    payload["clients"] = args.clients
    if args.backend == "milvus":
        payload["milvus_segment_mb"] = args.milvus_segment_mb
        payload["milvus_concurrent_searches"] = args.milvus_concurrent_searches
        payload["milvus_vs_faiss"] = versus(results)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
