"""`vidsearch demo` (`make demo`): the whole product on one machine, in under a minute.

1. a corpus of synthetic H.264 videos the demo model never saw (`vidsearch.demo.corpus`);
2. the demo model exported into a Triton model repository (`vidsearch.export`; kept if current);
3. the search server started on 127.0.0.1 with the embedded runtime and an empty index;
4. the corpus ingested through the gRPC `Ingest` call (the index is built and saved);
5. example queries through `SearchClient`, hits printed with timestamps, scores and the truth;
6. the web page's address (with `keep`, the server runs on for it until Ctrl-C);
7. a contact sheet of the top hits (PNG); the server stopped; how to run and query it for real.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from vidsearch.client import SearchClient, SearchHit
from vidsearch.demo.contact_sheet import Tile, write_sheet
from vidsearch.demo.corpus import CorpusSpec, Scene, make_corpus
from vidsearch.errors import ConfigError
from vidsearch.formats.model_repository import TEXT_MODEL
from vidsearch.runtime.repository import read_model
from vidsearch.serving.server import SearchServer
from vidsearch.serving.settings import load_settings

DEMO_PORT = 50051  # what the printed instructions use; the demo itself binds any free port
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = Path(".vidsearch-demo")
    model: Path | None = None  # a trained-model folder (config.json + weights); default: the shipped one
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    queries: tuple[str, ...] = ()  # default: four captions of different motions from the corpus
    top_k: int = 5
    keep: bool = False  # keep the server running (for the page) until Ctrl-C


@dataclass(frozen=True)
class QueryResult:
    query: str
    hits: tuple[SearchHit, ...]
    truth: tuple[str, ...]  # what each hit's scene shows


@dataclass(frozen=True)
class DemoResult:
    results: tuple[QueryResult, ...]
    contact_sheet: Path
    config_file: Path
    seconds: float

    @property
    def top1_correct(self) -> int:
        return sum(bool(r.truth) and r.truth[0] == r.query for r in self.results)


def _model_folder(model: Path | None, workdir: Path, console: Console) -> Path:
    if model is not None:
        return model
    from vidsearch.training.artifact import demo_model_dir

    folder = demo_model_dir()
    if (folder / "config.json").is_file():
        return folder
    return _untrained_demo_model(workdir / "untrained_demo_model", console)


def _untrained_demo_model(folder: Path, console: Console) -> Path:
    """The demo recipe's model with random weights: the whole pipeline runs end to end before the
    trained weights ship, and says loudly that its hits mean nothing."""
    import torch

    from vidsearch.models import create_model
    from vidsearch.training.artifact import save_model_folder
    from vidsearch.training.config import load_recipe
    from vidsearch.training.viclip import preprocess_of

    recipe = load_recipe("demo")
    torch.manual_seed(0)
    save_model_folder(folder, create_model(recipe.model), "viclip", recipe.model, preprocess_of(recipe))
    console.print("[bold yellow]model: the trained demo weights are not shipped yet (train them with "
                  "`vidsearch train viclip --preset demo`); running with UNTRAINED weights — the pipeline "
                  "is real, the hits below are not meaningful[/]")
    return folder


def export_demo_model(folder: Path, repository: Path, console: Console) -> None:
    """Export the folder's ViCLIP into `repository`, unless the repository holds these weights already."""
    from vidsearch.export import ExportConfig, export_model
    from vidsearch.export.exporter import file_sha256

    config = json.loads((folder / "config.json").read_text())
    weights = folder / config.get("weights", {}).get("file", WEIGHTS)
    if config.get("family") != "viclip" or not weights.is_file():
        raise ConfigError(f"{folder}: not a trained ViCLIP folder (config.json of family viclip, {WEIGHTS})")
    current = read_model(repository / TEXT_MODEL)
    if current is not None and current.checksum == f"sha256:{file_sha256(weights)}":
        console.print(f"model: {repository} holds these weights already (v{current.version})", markup=False)
        return
    preset = repository.parent / f"{config.get('preset') or folder.name}.json"
    preset.write_text(json.dumps({"family": "viclip", "config": config["config"]}, indent=2))
    started = time.monotonic()
    result = export_model(ExportConfig(model=str(preset), checkpoint=weights, out=repository, max_batch=16))
    console.print(f"model: exported {', '.join(m.name for m in result.models)} to {repository} "
                  f"in {time.monotonic() - started:.0f} s (ONNX, parity with PyTorch checked)", markup=False)


def _queries(scenes: list[Scene], given: tuple[str, ...]) -> list[str]:
    if given:
        return list(given)
    chosen: dict[str, str] = {}
    for scene in scenes:
        motion = scene.caption.split(" ", 3)[-1]
        chosen.setdefault(motion, scene.caption)
    return list(chosen.values())[:4]


def _truth(hit: SearchHit, scenes: list[Scene]) -> str:
    name = Path(hit.uri).name
    for scene in scenes:
        if scene.video == name and scene.start_s <= hit.start_s < scene.end_s:
            return scene.caption
    return "?"


def _show(console: Console, result: QueryResult) -> None:
    table = Table("#", "video", "start–end", "score", "the clip shows", "", title=Text(f"“{result.query}”"),
                  title_justify="left")  # Text: a query or file name is not Rich markup
    for rank, (hit, truth) in enumerate(zip(result.hits, result.truth, strict=True), 1):
        mark = "[green]✓[/green]" if truth == result.query else ""
        span = f"{hit.start_s:5.1f}–{hit.end_s:5.1f} s"
        table.add_row(str(rank), Text(hit.video_id), span, f"{hit.score:.3f}", Text(truth), mark)
    console.print(table)


def _config_file(workdir: Path, spec: CorpusSpec) -> Path:
    """The server's settings for this demo, to run it again with `vidsearch serve --config`."""
    root = workdir.resolve()
    lines = [f"port = {DEMO_PORT}", "metrics_port = 9464", f'index = "{root / "index"}"',
             f'allowed_roots = ["{root / "videos"}"]', "", "[runtime]",
             f'model_repository = "{root / "model_repository"}"', "", "[video]",
             f"clip_length_s = {spec.scene_s}"]
    path = workdir / "server.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _serve_and_query(config_file: Path, videos: list[str], scenes: list[Scene], options: DemoOptions,
                     console: Console) -> list[QueryResult]:
    settings = load_settings(config_file, port=0, metrics_port=0, http={"port": 0})
    results = []
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        console.print(f"server: {server.address} (gRPC, health {client.health()}), metrics on "
                      f"http://127.0.0.1:{server.metrics_port}/metrics")
        began = time.monotonic()
        outcomes = client.ingest(videos, replace=True, timeout_s=300)
        failed = [o for o in outcomes if o.error_code]
        if failed:
            raise ConfigError(f"ingest failed for {failed[0].path}: {failed[0].error}")
        stats = client.index_stats()
        console.print(f"index: {sum(o.clips for o in outcomes)} clips of {len(outcomes)} videos ingested in "
                      f"{time.monotonic() - began:.1f} s through the Ingest call → {stats.index_type} index "
                      f"{stats.index_version}")
        for query in _queries(scenes, options.queries):
            found = client.search(query, top_k=options.top_k)
            result = QueryResult(query, found.hits, tuple(_truth(h, scenes) for h in found.hits))
            _show(console, result)
            results.append(result)
        if server.http is not None:
            stops = "  (Ctrl-C stops the server)" if options.keep else ""
            console.print(f"page: {server.http.url}{stops}")
        if options.keep:
            try:
                server.wait()
            except KeyboardInterrupt:
                console.print("")
    console.print("server: stopped")
    return results


def run_demo(options: DemoOptions, console: Console) -> DemoResult:
    started = time.monotonic()
    workdir = options.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    folder = _model_folder(options.model, workdir, console)
    scenes = make_corpus(workdir / "videos", options.corpus)
    videos = sorted({s.video for s in scenes})
    spec = options.corpus
    console.print(f"corpus: {len(videos)} H.264 videos, {len(scenes)} scenes of {spec.scene_s:.0f} s (seed "
                  f"{spec.seed}, never seen by the model) in {workdir / 'videos'}", markup=False)
    export_demo_model(folder, workdir / "model_repository", console)
    config_file = _config_file(workdir, options.corpus)
    results = _serve_and_query(config_file, videos, scenes, options, console)
    rows = [(f"“{r.query}”", [Tile(workdir / "videos" / Path(h.uri).name, h.start_s, h.end_s,
                                   f"{h.video_id} {h.start_s:.0f}-{h.end_s:.0f}s\nscore {h.score:.3f}",
                                   truth == r.query) for h, truth in zip(r.hits, r.truth, strict=True)])
            for r in results]
    sheet = write_sheet(rows, workdir / "contact_sheet.png")
    return DemoResult(tuple(results), sheet, config_file, time.monotonic() - started)
