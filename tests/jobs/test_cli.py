"""`vidsearch embed`: exit status 0 done, 3 done with failures, 1 could not run."""

from pathlib import Path

from typer.testing import CliRunner

from vidsearch.cli import app
from vidsearch.errors import EXIT_NO_GPU
from vidsearch.jobs import EXIT_ERROR, EXIT_WITH_FAILURES

from ..runtime.models import Repository
from .conftest import CLIP_LEN, Corpus
from .helpers import read_output


def test_exit_status(repository: Repository, corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["embed", str(corpus.folder / "clip-[01].mp4"), "--out", str(out), "--model-repository",
            str(repository.path), "--clip-len", str(CLIP_LEN), "--threads", "1", "--no-progress"]
    runner = CliRunner()
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "clips" in done.output
    (corpus.folder.parent / "broken").mkdir(exist_ok=True)
    broken = corpus.folder.parent / "broken" / "broken.mp4"
    broken.write_bytes(b"not a video")
    failed = runner.invoke(app, [*args[:1], str(broken), *args[2:3], str(tmp_path / "other"), *args[4:]])
    assert failed.exit_code == EXIT_WITH_FAILURES
    assert "failures.jsonl" in failed.output
    mismatch = runner.invoke(app, [*args, "--dtype", "float16"])
    assert mismatch.exit_code == EXIT_ERROR
    assert "dtype" in mismatch.output
    assert "--overwrite" in mismatch.output


def test_embed_on_the_torch_runtime_writes_the_embedded_runtimes_vectors(
        repository: Repository, corpus: Corpus, tmp_path: Path) -> None:
    args = ["embed", str(corpus.folder / "clip-[01].mp4"), "--model-repository", str(repository.path),
            "--clip-len", str(CLIP_LEN), "--threads", "1", "--no-progress"]
    runner = CliRunner()
    on_ort = runner.invoke(app, [*args, "--out", str(tmp_path / "ort")])
    assert on_ort.exit_code == 0, on_ort.output
    on_torch = runner.invoke(app, [*args, "--out", str(tmp_path / "torch"), "--runtime", "torch",
                                   "--gpu", "off"])
    assert on_torch.exit_code == 0, on_torch.output
    expected, found = read_output(tmp_path / "ort"), read_output(tmp_path / "torch")
    assert sorted(found) == sorted(expected)
    for clip_id, vector in found.items():
        assert float(vector @ expected[clip_id]) >= 0.9999
    required = runner.invoke(app, [*args, "--out", str(tmp_path / "gpu"), "--runtime", "torch",
                                   "--gpu", "required"])
    assert required.exit_code == EXIT_NO_GPU
    assert 'gpu = "required" and no GPU runtime can start' in required.output
