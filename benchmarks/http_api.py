"""HTTP/JSON API and web page benchmark (issue 16): what the HTTP face adds, and how fast the page shows.

One server (the demo corpus: 12 videos of 6 scenes, 72 clips; the shipped demo model, exported; the
embedded runtime) serves both faces. It measures:

- Search over gRPC and `POST /v1/search` over HTTP (one keep-alive connection of the standard
  library's client, JSON decoded), interleaved call by call at concurrency 1, top 10, every query
  text new (the text cache never answers): p50 of each, and the difference (target: HTTP adds ≤ 1 ms
  at p50);
- the page in Debian's headless Chromium: the time from sending a query (top 50, thumbnails already
  made on the server, the browser's cache off) until 50 cards show with every thumbnail decoded, by
  the page's own Performance API marks `query-sent` → `results-shown` (target ≤ 300 ms; median of
  the runs), and before them the first query, for all 72 clips, which makes every thumbnail;
- the page's own assets (HTML, CSS, JavaScript) in bytes (target ≤ 100 kB).

With `--screenshots DIR` it also saves the page at desktop and phone width (PNG) there.

    .venv/bin/python benchmarks/http_api.py                      # about two minutes on 2 cores
    .venv/bin/python benchmarks/http_api.py --screenshots docs/images

Prints a table and writes benchmarks/results/http_api.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the browser launcher of the page tests (tests/serving/browser.py)

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from http.client import HTTPConnection  # noqa: E402

from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.serving.browser import chromium  # noqa: E402
from vidsearch.client import SearchClient  # noqa: E402
from vidsearch.demo.corpus import CorpusSpec, make_corpus  # noqa: E402
from vidsearch.demo.run import _model_folder, export_demo_model  # noqa: E402
from vidsearch.serving import SearchServer, load_settings  # noqa: E402
from vidsearch.serving.http.app import STATIC  # noqa: E402

QUERY = "a red square moves to the left"
PAGE_TOP_K = 50
ALL_CLIPS = CorpusSpec().videos * CorpusSpec().scenes_per_video
TARGETS = {"http_overhead_ms": 1.0, "page_ms": 300.0, "assets_kb": 100.0}


def _server(workdir: Path, console: Console) -> SearchServer:
    spec = CorpusSpec()
    scenes = make_corpus(workdir / "videos", spec)
    export_demo_model(_model_folder(None, workdir, console), workdir / "model_repository", console)
    settings = load_settings(None, port=0, metrics_port=None, http={"port": 0}, index=workdir / "index",
                             allowed_roots=(workdir / "videos",), video={"clip_length_s": spec.scene_s},
                             runtime={"model_repository": workdir / "model_repository"})
    server = SearchServer(settings)
    server.start()
    with SearchClient(server.address) as client:
        client.ingest(sorted({s.video for s in scenes}), timeout_s=600)
    return server


def _overhead(server: SearchServer, rounds: int) -> dict[str, float]:
    assert server.http is not None
    grpc_ms, http_ms = [], []
    http = HTTPConnection("127.0.0.1", server.http.port)
    headers = {"Content-Type": "application/json"}
    with SearchClient(server.address) as client:
        for number in range(rounds + 20):
            began = time.perf_counter()
            client.search(f"{QUERY} {number} g", top_k=10)
            middle = time.perf_counter()
            query = json.dumps({"query": f"{QUERY} {number} h", "top_k": 10})
            http.request("POST", "/v1/search", query, headers)
            response = http.getresponse()
            body = json.loads(response.read())
            ended = time.perf_counter()
            assert response.status == 200, body
            assert len(body["hits"]) == 10, body
            if number >= 20:  # warm-up left out
                grpc_ms.append((middle - began) * 1000)
                http_ms.append((ended - middle) * 1000)
    http.close()
    grpc_p50, http_p50 = statistics.median(grpc_ms), statistics.median(http_ms)
    return {"grpc_p50_ms": grpc_p50, "http_p50_ms": http_p50, "http_overhead_ms": http_p50 - grpc_p50}


_SEARCH = """
    const done = arguments[arguments.length - 1];
    document.getElementById('merge').checked = false;
    document.getElementById('group').checked = false;
    document.getElementById('top-k').value = arguments[0];
    document.getElementById('query').value = arguments[1];
    const seen = new PerformanceObserver((list) => {
        const entry = list.getEntriesByName('results')[0];
        if (!entry) return;
        seen.disconnect();
        done([entry.duration, document.querySelectorAll('.card img').length]);
    });
    seen.observe({ entryTypes: ['measure'] });
    document.getElementById('search').requestSubmit();
"""


def _page(server: SearchServer, runs: int, screenshots: Path | None) -> dict[str, float]:
    assert server.http is not None
    timings = []
    with chromium() as browser:
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        browser.get(server.http.url)
        first, _ = browser.execute_async_script(_SEARCH, ALL_CLIPS, QUERY)  # makes every thumbnail
        for number in range(runs):
            duration, cards = browser.execute_async_script(_SEARCH, PAGE_TOP_K, f"{QUERY} {number}")
            assert cards == PAGE_TOP_K, cards
            timings.append(duration)
        if screenshots is not None:
            _screenshots(browser, screenshots)
    return {"page_first_ms": first, "page_ms": statistics.median(timings)}


def _screenshots(browser: object, folder: Path) -> None:
    """The page with results, at desktop and at phone width (PNG, reduced to a palette to stay small)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in {"web-desktop.png": (1280, 860), "web-phone.png": (390, 844)}.items():
        browser.set_window_size(width, height)  # type: ignore[attr-defined]
        browser.execute_async_script(_SEARCH, 12, QUERY)  # type: ignore[attr-defined]
        browser.execute_script("document.querySelector('.card').blur()")  # type: ignore[attr-defined]
        shot = Image.open(io.BytesIO(browser.get_screenshot_as_png()))  # type: ignore[attr-defined]
        shot.convert("RGB").quantize(colors=128).save(folder / name, optimize=True)


def _assets() -> dict[str, float]:
    sizes = {item.name: len(item.read_bytes()) for item in STATIC.iterdir() if item.is_file()}
    return {"assets_kb": sum(sizes.values()) / 1000, **{f"asset_{k}_bytes": v for k, v in sizes.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="interleaved gRPC/HTTP searches")
    parser.add_argument("--page-runs", type=int, default=7, help="page searches after the first")
    parser.add_argument("--screenshots", type=Path, help="save the page's screenshots (PNG) here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "http_api.json")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="vidsearch-http-bench-") as work:
        server = _server(Path(work), console)
        try:
            results = {**_overhead(server, args.rounds), **_page(server, args.page_runs, args.screenshots),
                       **_assets()}
        finally:
            server.stop()
    table = Table("measure", "value", "target", title="HTTP API and page (issue 16)", title_justify="left")
    table.add_row("gRPC Search p50", f"{results['grpc_p50_ms']:.2f} ms", "")
    table.add_row("HTTP POST /v1/search p50", f"{results['http_p50_ms']:.2f} ms", "")
    table.add_row("HTTP − gRPC (p50)", f"{results['http_overhead_ms']:.2f} ms", "≤ 1 ms")
    table.add_row(f"page: {PAGE_TOP_K} results with thumbnails (median)", f"{results['page_ms']:.0f} ms",
                  "≤ 300 ms")
    table.add_row(f"page: first query, {ALL_CLIPS} results (thumbnails made)",
                  f"{results['page_first_ms']:.0f} ms", "")
    table.add_row("page's own assets", f"{results['assets_kb']:.1f} kB", "≤ 100 kB")
    console.print(table)
    record = {"benchmark": "http_api", "machine": platform.machine(), "cpus": len(os.sched_getaffinity(0)),
              "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds, "page_runs": args.page_runs,
              "targets": TARGETS, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
