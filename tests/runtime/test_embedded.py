"""The embedded runtime (ONNX Runtime in-process) against the PyTorch models it was exported from."""

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidsearch.errors import ConfigError, DeadlineExceededError, RequestError
from vidsearch.models.tokenizer import Tokenizer
from vidsearch.runtime import ModelRuntime, RuntimeConfig, open_runtime, read_repository
from vidsearch.runtime.embedded import EmbeddedBackend

from ..concurrency import AtOnce
from .models import MAX_BATCH, Repository

QUERIES = ["a red circle moves to the left", "a blue square grows", "the green cross stays still"]


@pytest.fixture(scope="module")
def batch_sizes() -> list[int]:
    """The batch size of every model run of the module's runtime."""
    return []


@pytest.fixture(scope="module")
def runtime(repository: Repository, batch_sizes: list[int]) -> Iterator[ModelRuntime]:
    rt = open_runtime(RuntimeConfig(model_repository=repository.path, threads=1),
                      observer=lambda model, size, seconds: batch_sizes.append(size))
    yield rt
    rt.close()


def _torch_text(repository: Repository, texts: list[str]) -> np.ndarray:
    with torch.no_grad():
        tokens = torch.from_numpy(Tokenizer()(texts))
        return F.normalize(repository.viclip.encode_text(tokens), dim=-1).numpy()


def test_text_embeddings_equal_the_pytorch_model_through_the_tokenizer(runtime: ModelRuntime,
                                                                       repository: Repository) -> None:
    vectors = runtime.embed_text(QUERIES)
    assert vectors.shape == (3, 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, _torch_text(repository, QUERIES), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert runtime.facts.model_name == "tiny-viclip"
    assert runtime.facts.model_checksum.startswith("sha256:")


def test_concurrent_queries_are_batched_and_each_gets_its_own_vector(runtime: ModelRuntime,
                                                                     repository: Repository,
                                                                     batch_sizes: list[int],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"query number {i} about a moving shape" for i in range(13)]
    expected = _torch_text(repository, texts)
    backend = runtime._backend
    infer = backend.infer
    entered, gate = threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        if not entered.is_set():  # the first query keeps the model busy while the others arrive
            entered.set()
            gate.wait(5)
        return infer(*args, **kwargs)

    monkeypatch.setattr(backend, "infer", held)
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = runtime.embed_text([texts[i]])[0]

    batch_sizes.clear()
    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert entered.wait(5)
    others = [threading.Thread(target=ask, args=(i,)) for i in range(1, 13)]
    for thread in others:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in [first, *others]:
        thread.join(10)
    np.testing.assert_allclose(np.stack([results[i] for i in range(13)]), expected, atol=2e-5)
    assert batch_sizes == [1, MAX_BATCH, MAX_BATCH, MAX_BATCH]  # the waiting queries ran in full batches


def test_concurrent_queries_are_tokenized_one_at_a_time(runtime: ModelRuntime, repository: Repository,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"query {i} about a shape that tokenizes slowly" for i in range(6)]
    expected = _torch_text(repository, texts)
    tokenizer = runtime._tokenizer
    assert tokenizer is not None
    watched = AtOnce(tokenizer, pause_s=0.01)  # long enough for the other queries to arrive meanwhile
    monkeypatch.setattr(runtime, "_tokenizer", watched)
    results: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, runtime.embed_text([texts[i]])[0]))
               for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert watched.most == 1
    np.testing.assert_allclose(np.stack([results[i] for i in range(6)]), expected, atol=2e-5)


def test_repeated_texts_come_from_the_cache(runtime: ModelRuntime) -> None:
    first = runtime.embed_text(["cached query"])
    before = runtime.cache_stats()
    again = runtime.embed_text(["cached query"])
    after = runtime.cache_stats()
    np.testing.assert_array_equal(first, again)
    assert after.hits == before.hits + 1
    assert after.misses == before.misses


def test_video_embeddings_and_classes_equal_the_pytorch_models(runtime: ModelRuntime,
                                                               repository: Repository) -> None:
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((MAX_BATCH + 2, 8, 3, 32, 32)).astype(np.float32)  # more than one batch
    with torch.no_grad():
        expected = F.normalize(repository.viclip.encode_video(torch.from_numpy(clips)), dim=-1).numpy()
    np.testing.assert_allclose(runtime.embed_video(clips), expected, atol=2e-5)
    video = rng.standard_normal((3, 3, 4, 32, 32)).astype(np.float32)
    with torch.no_grad():
        logits = repository.videomae(torch.from_numpy(video)).numpy()
    np.testing.assert_allclose(runtime.classify(video), logits, atol=1e-4)


def test_inputs_of_the_wrong_shape_are_refused_with_the_expected_shape(runtime: ModelRuntime) -> None:
    with pytest.raises(RequestError, match=r"takes clips shaped \[8, 3, 32, 32\], got \[8, 3, 64, 64\]"):
        runtime.embed_video(np.zeros((1, 8, 3, 64, 64), dtype=np.float32))


def test_a_spent_deadline_stops_the_work(runtime: ModelRuntime) -> None:
    with pytest.raises(DeadlineExceededError):
        runtime.embed_video(np.zeros((2, 8, 3, 32, 32), dtype=np.float32), timeout_s=0.0)
    with pytest.raises(DeadlineExceededError):
        runtime.embed_text(["never seen before, so not cached"], timeout_s=0.0)


def test_a_deadline_passing_inside_a_batch_stops_the_batch(repository: Repository) -> None:
    """ONNX Runtime is told to terminate the run at the deadline: a request does not hold the cores
    until the end of a long batch (1,024 clips here: 0.4-0.8 s whole on one thread, idle machine).
    The run is on this thread (one ONNX Runtime thread), so its CPU time is what it held of the cores:
    what other processes take meanwhile delays the wall clock, not this."""
    models = read_repository(RuntimeConfig(model_repository=repository.path))
    backend = EmbeddedBackend(models, threads=1)
    vision = models.vision
    assert vision is not None
    output = vision.description.normalized_output or ""
    clips = {vision.input.name: np.zeros((1024, *vision.input.shape[1:]), np.float32)}
    started, cpu_started = time.monotonic(), time.thread_time()
    whole = backend.infer(vision, clips, [output], None)[output]
    whole_s, whole_cpu_s = time.monotonic() - started, time.thread_time() - cpu_started
    cpu_started = time.thread_time()
    with pytest.raises(DeadlineExceededError, match="during a batch"):
        backend.infer(vision, clips, [output], whole_s / 10)
    assert time.thread_time() - cpu_started < whole_cpu_s / 2
    small = {vision.input.name: np.zeros((2, *vision.input.shape[1:]), np.float32)}
    np.testing.assert_allclose(backend.infer(vision, small, [output], 30.0)[output], whole[:2], atol=1e-6)


def test_a_repository_without_a_model_says_which_is_missing(repository: Repository, tmp_path: Path) -> None:
    partial = tmp_path / "repo"
    shutil.copytree(repository.path / "viclip_text", partial / "viclip_text")
    rt = open_runtime(RuntimeConfig(model_repository=partial))
    try:
        assert rt.embed_text(["still answers text"]).shape == (1, 32)
        with pytest.raises(ConfigError, match="no model for video embeddings"):
            rt.embed_video(np.zeros((1, 8, 3, 32, 32), dtype=np.float32))
    finally:
        rt.close()
    with pytest.raises(ConfigError, match="does not exist"):
        read_repository(RuntimeConfig(model_repository=tmp_path / "absent"))


def test_towers_of_different_checkpoints_are_refused(repository: Repository, tmp_path: Path) -> None:
    mixed = tmp_path / "repo"
    shutil.copytree(repository.path, mixed)
    manifest = mixed / "viclip_vision" / "1" / "vidsearch.json"
    data = json.loads(manifest.read_text())
    data["source"]["checkpoint_sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="come from different checkpoints"):
        read_repository(RuntimeConfig(model_repository=mixed))


def test_the_decoding_ensemble_is_read_only_where_it_serves_the_vision_model(repository: Repository,
                                                                             tmp_path: Path) -> None:
    assert read_repository(RuntimeConfig(model_repository=repository.path)).video_embed is not None
    copy = tmp_path / "repo"
    shutil.copytree(repository.path, copy)
    manifest = copy / "viclip_video_embed" / "1" / "vidsearch.json"
    data = json.loads(manifest.read_text())
    del data["engine"]  # as the GPU exports before the CPU target had it: no batch limit to read
    manifest.write_text(json.dumps(data))
    assert read_repository(RuntimeConfig(model_repository=copy)).video_embed is None
    data["engine"] = {"max_batch": 4}
    data["source"]["checkpoint_sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="viclip_video_embed/1 was exported from another checkpoint"):
        read_repository(RuntimeConfig(model_repository=copy))


def test_the_newest_version_is_served(repository: Repository, tmp_path: Path) -> None:
    versions = tmp_path / "repo"
    shutil.copytree(repository.path, versions)
    for name in ("viclip_text", "viclip_vision"):
        shutil.copytree(versions / name / "1", versions / name / "3")
    models = read_repository(RuntimeConfig(model_repository=versions))
    assert models.text is not None
    assert models.vision is not None
    assert (models.text.version, models.vision.version) == (3, 3)
    assert models.text.max_batch == MAX_BATCH
