"""Soak and fault benchmark: search under ingest/delete churn, hostile requests, and SIGKILLs of the server.

A real `vidsearch serve` process (the demo model's architecture, an index of `--clips` clip vectors)
is loaded by concurrent Search clients, health probes (every 100 ms) and, in three phases:

1. quiet: searches only: the baseline search p99;
2. churn: an Ingest / DeleteVideo loop over real H.264 videos and a stream of hostile requests
   (empty, huge and degenerate values, paths outside the allowed root, garbage page tokens, NaN);
3. kills: the same churn while the server is killed with SIGKILL `--kills` times at random moments and
   restarted on the same directory. After each restart every video whose last write was acknowledged
   is checked: present with all its clips after an acknowledged Ingest, absent after an acknowledged
   DeleteVideo. A write cut by the kill may have happened or not.

Prints search p99 in churn vs quiet (target ≤ 3×), acknowledged writes lost (target 0 over ≥ 20 kills),
health probes refused while the server was up (target 0), hostile requests answered INTERNAL or UNKNOWN
(target 0), and writes JSON to benchmarks/results/soak.json. `--minutes` is the length of phases 1
and 2 together (the kill phase lasts as long as its kills take):

    .venv/bin/python benchmarks/soak.py                 # 10 minutes, 150k clips (the issue's setting)
    .venv/bin/python benchmarks/soak.py --minutes 3     # shorter
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving import build_index, export, queries, start_server

from vidsearch.demo.corpus import CorpusSpec, make_corpus
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.proto.vidsearch.v1 import search_pb2_grpc as pb_grpc

RESULTS = Path(__file__).parent / "results" / "soak.json"
SEARCHERS = 4
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 300),
                   ("grpc.min_reconnect_backoff_ms", 100)]
BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


@dataclass
class Tally:
    """What the clients saw in one phase."""

    search_ms: list[float] = field(default_factory=list)
    search_errors: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    probes_refused: int = 0
    hostile: int = 0
    hostile_bad: dict[str, int] = field(default_factory=dict)
    writes_acknowledged: int = 0
    ingest_errors: dict[str, int] = field(default_factory=dict)  # acknowledged, with an error result

    def p(self, q: float) -> float:
        return float(np.percentile(self.search_ms, q)) if self.search_ms else math.nan


def count(table: dict[str, int], key: str) -> None:
    table[key] = table.get(key, 0) + 1


class Soak:
    def __init__(self, repository: Path, index: Path, videos: list[Path], workdir: Path,
                 threads: int) -> None:
        self.repository, self.index, self.videos, self.workdir = repository, index, videos, workdir
        self.threads = threads
        with socket.socket() as probe:  # a fixed port, so that clients reconnect after each restart
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.SearchServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.tally = Tally()
        self.up = threading.Event()
        self.churning = threading.Event()
        self.paused = threading.Lock()  # held by the checker: the churn waits while it counts
        self.stop = threading.Event()
        self.state: dict[str, int | None] = {}  # video id → clips acknowledged (0: deleted; None: unknown)
        self.process: subprocess.Popen[bytes] | None = None

    # -- the server --------------------------------------------------------------------------------

    def start(self) -> float:
        started = time.monotonic()
        settings = f'port = {self.port}\nallowed_roots = ["{self.videos[0].parent}"]\n'
        self.process, _ = start_server(self.repository, self.index, self.workdir, 16, self.threads, settings)
        self.up.set()
        return time.monotonic() - started

    def kill(self) -> None:
        self.up.clear()
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    # -- the clients -------------------------------------------------------------------------------

    def searcher(self, seed: int) -> None:
        round_ = 0
        texts = iter(queries(1000, seed))
        while not self.stop.is_set():
            if not self.up.is_set():
                time.sleep(0.05)
                continue
            started = time.perf_counter()
            try:
                text = next(texts, None)
                if text is None:  # new texts, so that the text cache never answers
                    round_ += 1
                    texts = iter(queries(1000, seed + 1000 * round_))
                    continue
                self.stub.Search(pb.SearchRequest(query=text, top_k=10), timeout=10)
                if self.up.is_set():
                    self.tally.search_ms.append((time.perf_counter() - started) * 1000)
            except grpc.RpcError as err:
                if self.up.is_set():
                    count(self.tally.search_errors, err.code().name)

    def prober(self) -> None:
        while not self.stop.wait(0.1):
            if not self.up.is_set():
                continue
            try:
                status = self.health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                refused = status != health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError as err:
                refused = err.code() != grpc.StatusCode.UNAVAILABLE or self.up.is_set()
            if self.up.is_set():
                self.tally.probes += 1
                self.tally.probes_refused += refused

    def churner(self) -> None:
        rng = np.random.default_rng(1)
        while not self.stop.is_set():
            if not (self.churning.is_set() and self.up.is_set()):
                time.sleep(0.05)
                continue
            with self.paused:
                path = self.videos[int(rng.integers(len(self.videos)))]
                video = f"soak-{path.stem}"
                ingest = not self.state.get(video)
                self.state[video] = None  # in flight: either outcome is allowed until acknowledged
                try:
                    if ingest:
                        item = pb.IngestItem(path=path.name, video_id=video)
                        result = self.stub.Ingest(pb.IngestRequest(items=[item], replace=True), timeout=30)
                        outcome = result.results[0]
                        self.state[video] = outcome.clips or None
                        if outcome.error_code:
                            count(self.tally.ingest_errors, outcome.error_code)
                    else:
                        self.stub.DeleteVideo(pb.DeleteVideoRequest(video_id=video), timeout=30)
                        self.state[video] = 0
                    self.tally.writes_acknowledged += 1
                except grpc.RpcError:
                    pass

    def hostile(self) -> None:
        huge = "x" * 100_000
        nan = pb.ClipOptions(length_s=float("nan"))
        outside, long_path = pb.IngestItem(path="../../etc/passwd"), pb.IngestItem(path="a" * 10_000)
        long_id = "no-such" * 1000
        calls = {
            "empty query": lambda: self.stub.Search(pb.SearchRequest(query=""), timeout=5),
            "100k-char query": lambda: self.stub.Search(pb.SearchRequest(query=huge), timeout=5),
            "negative top_k": lambda: self.stub.Search(pb.SearchRequest(query="a", top_k=-5), timeout=5),
            "huge top_k": lambda: self.stub.Search(pb.SearchRequest(query="a", top_k=2**31 - 1), timeout=5),
            "garbage page token": lambda: self.stub.Search(pb.SearchRequest(query="a", page_token="x!"),
                                                           timeout=5),
            "empty video id": lambda: self.stub.DeleteVideo(pb.DeleteVideoRequest(video_id=""), timeout=5),
            "7k-char video id": lambda: self.stub.DeleteVideo(pb.DeleteVideoRequest(video_id=long_id),
                                                              timeout=5),
            "path outside the root": lambda: self.stub.Ingest(pb.IngestRequest(items=[outside]), timeout=5),
            "10k-char path": lambda: self.stub.Ingest(pb.IngestRequest(items=[long_path]), timeout=5),
            "no items": lambda: self.stub.Ingest(pb.IngestRequest(items=[]), timeout=5),
            "NaN clip length": lambda: self.stub.Ingest(
                pb.IngestRequest(items=[pb.IngestItem(path=self.videos[0].name)], clips=nan), timeout=5),
        }
        names = sorted(calls)
        rng = np.random.default_rng(2)
        while not self.stop.wait(0.05):
            if not (self.churning.is_set() and self.up.is_set()):
                continue
            name = names[int(rng.integers(len(names)))]
            try:
                calls[name]()
            except grpc.RpcError as err:
                if err.code() in BAD_CODES and self.up.is_set():
                    count(self.tally.hostile_bad, f"{name}: {err.code().name}")
            self.tally.hostile += 1

    # -- checks ------------------------------------------------------------------------------------

    def lost_writes(self) -> list[str]:
        """Videos whose acknowledged state the restarted server does not hold."""
        lost = []
        with self.paused:
            for video, clips in sorted(self.state.items()):
                if clips is None:
                    continue
                only = pb.Filter(video_ids=[video])
                request = pb.SearchRequest(query="a red circle", top_k=1000, filter=only)
                held = len(self.stub.Search(request, timeout=30).hits)
                if held != clips:
                    lost.append(f"{video}: {held} clips, acknowledged {clips}")
        return lost

    def phase(self, seconds: float) -> Tally:
        self.tally = Tally()
        time.sleep(seconds)
        return self.tally


def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    print("export and index …", flush=True)
    repository = export("demo", workdir)
    index, factory = build_index(repository, args.clips, workdir)
    videos = [workdir / "videos" / scene.video for scene in
              make_corpus(workdir / "videos", CorpusSpec(videos=8, scenes_per_video=2))[::2]]
    soak = Soak(repository, index, videos, workdir, args.threads)
    first_start = soak.start()
    threads = [threading.Thread(target=soak.searcher, args=(seed,), daemon=True)
               for seed in range(SEARCHERS)]
    threads += [threading.Thread(target=f, daemon=True) for f in (soak.prober, soak.churner, soak.hostile)]
    for thread in threads:
        thread.start()
    seconds = args.minutes * 60
    try:
        print(f"quiet {seconds * 0.4:.0f} s …", flush=True)
        quiet = soak.phase(seconds * 0.4)
        soak.churning.set()
        print(f"churn {seconds * 0.6:.0f} s …", flush=True)
        churn = soak.phase(seconds * 0.6)
        print(f"{args.kills} kills …", flush=True)
        kills = Tally()
        soak.tally = kills
        rng = np.random.default_rng(3)
        lost: list[str] = []
        restarts = []
        for number in range(args.kills):
            time.sleep(float(rng.uniform(1.0, 4.0)))
            soak.kill()
            restarts.append(soak.start())
            lost += soak.lost_writes()
            print(f"  kill {number + 1}: restarted in {restarts[-1]:.1f} s, {len(lost)} writes lost so far",
                  flush=True)
    finally:
        soak.stop.set()
        for thread in threads:
            thread.join(timeout=60)
        if soak.process is not None and soak.process.poll() is None:
            soak.process.send_signal(signal.SIGTERM)
            soak.process.wait(timeout=60)
        soak.channel.close()
    return {
        "clips": args.clips, "factory": factory, "minutes": args.minutes, "searchers": SEARCHERS,
        "kills": args.kills, "first_start_s": first_start, "restart_s_median": float(np.median(restarts)),
        "quiet": summary(quiet), "churn": summary(churn), "kill_phase": summary(kills),
        "p99_ratio": churn.p(99) / quiet.p(99),
        "writes_acknowledged": churn.writes_acknowledged + kills.writes_acknowledged,
        "writes_lost": len(lost), "lost": lost[:20],
        "probes_refused": quiet.probes_refused + churn.probes_refused + kills.probes_refused,
        "hostile_internal_or_unknown": sum(sum(t.hostile_bad.values()) for t in (churn, kills)),
        "hostile_bad": {**churn.hostile_bad, **{k: v + churn.hostile_bad.get(k, 0)
                                                for k, v in kills.hostile_bad.items()}},
    }  # fmt: skip


def summary(tally: Tally) -> dict[str, object]:
    return {"searches": len(tally.search_ms), "p50_ms": tally.p(50), "p99_ms": tally.p(99),
            "search_errors": tally.search_errors, "probes": tally.probes,
            "probes_refused": tally.probes_refused,
            "hostile": tally.hostile, "hostile_bad": tally.hostile_bad,
            "writes_acknowledged": tally.writes_acknowledged, "ingest_errors": tally.ingest_errors}


def report(result: dict[str, object]) -> None:
    rows = [("quiet", result["quiet"]), ("churn", result["churn"]), ("kills", result["kill_phase"])]
    print(f"\n{'phase':8} {'searches':>9} {'p50 ms':>8} {'p99 ms':>8} {'probes':>7} {'refused':>8} "
          f"{'hostile':>8} {'writes':>7}")
    for name, row in rows:
        assert isinstance(row, dict)
        print(f"{name:8} {row['searches']:>9} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['probes']:>7} "
              f"{row['probes_refused']:>8} {row['hostile']:>8} {row['writes_acknowledged']:>7}")
    print(f"\nsearch p99 churn / quiet: {result['p99_ratio']:.2f}× (target ≤ 3×)")
    print(f"acknowledged writes lost over {result['kills']} SIGKILLs: {result['writes_lost']} of "
          f"{result['writes_acknowledged']} (target 0); restart median {result['restart_s_median']:.1f} s")
    print(f"health probes refused while up: {result['probes_refused']} (target 0)")
    print(f"hostile requests answered INTERNAL/UNKNOWN: {result['hostile_internal_or_unknown']} (target 0) "
          f"{result['hostile_bad']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="quiet + churn phases, in minutes")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the server in the last phase")
    parser.add_argument("--clips", type=int, default=150_000, help="clips in the index")
    parser.add_argument("--threads", type=int, default=2, help="the server's ONNX Runtime threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vidsearch-soak-") as tmp:
        result = run(args, Path(tmp))
    result["wall_s"] = time.monotonic() - started
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
               "result": result}
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
