"""What the runtime tells its callers (facts, not layout), and the text path past its batcher."""

import dataclasses
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vidsearch.errors import ModelFormatError
from vidsearch.runtime import ModelRuntime, RuntimeConfig, RuntimeFacts, open_runtime, read_repository
from vidsearch.video.preprocess import Preprocess

from .models import MAX_BATCH, Repository


@pytest.fixture(scope="module")
def runs() -> list[tuple[str, int]]:
    return []


@pytest.fixture(scope="module")
def runtime(repository: Repository, runs: list[tuple[str, int]]) -> Iterator[ModelRuntime]:
    rt = open_runtime(RuntimeConfig(model_repository=repository.path, threads=1),
                      observer=lambda model, size, seconds: runs.append((model, size)))
    yield rt
    rt.close()


def test_the_facts_name_the_models_and_nothing_of_the_repository(runtime: ModelRuntime,
                                                                 repository: Repository) -> None:
    facts = runtime.facts
    fields = [f.name for f in dataclasses.fields(RuntimeFacts)]
    assert fields == ["text", "vision", "classifier", "text_batch"]
    assert (facts.model_name, facts.dim, facts.text_batch) == ("tiny-viclip", 32, MAX_BATCH)
    assert facts.text is not None
    assert facts.vision is not None
    assert facts.classifier is not None
    assert (facts.text.version, facts.vision.version, facts.classifier.version) == ("1", "1", "1")
    assert facts.classifier.name == "tiny-videomae"
    assert facts.classifier.width == 7  # classes
    assert facts.vision.batch == MAX_BATCH
    assert facts.text.preprocess is None
    spec = json.loads((repository.path / "viclip_vision" / "1" / "vidsearch.json").read_text())["preprocess"]
    assert facts.vision.preprocess == Preprocess.from_dict({k: v for k, v in spec.items() if k != "digest"})
    assert facts.model_checksum == facts.vision.checksum != facts.classifier.checksum


def test_a_callers_batch_runs_at_once_past_a_busy_batcher(runtime: ModelRuntime, runs: list[tuple[str, int]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"search query {i} for a batch of its own" for i in range(MAX_BATCH + 2)]
    backend = runtime._backend
    infer = backend.infer
    entered, gate = threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        if not entered.is_set():  # the first run (through the batcher) keeps the batcher busy
            entered.set()
            gate.wait(5)
        return infer(*args, **kwargs)

    monkeypatch.setattr(backend, "infer", held)
    waiting = threading.Thread(target=runtime.embed_text, args=(["a query that holds the batcher"],))
    waiting.start()
    try:
        assert entered.wait(5)
        runs.clear()
        vectors = runtime.embed_text_batch(texts)  # would wait behind the held run if it took the batcher
        assert runs == [("viclip_text", MAX_BATCH), ("viclip_text", 2)]  # in the model's batch limit
    finally:
        gate.set()
        waiting.join(10)
    runs.clear()
    np.testing.assert_allclose(runtime.embed_text(texts), vectors, atol=1e-6)
    assert runs == []  # cached by the batch call


def test_a_preprocessing_spec_that_no_longer_matches_its_digest_is_refused(repository: Repository,
                                                                          tmp_path: Path) -> None:
    edited = tmp_path / "repo"
    shutil.copytree(repository.path, edited)
    description = edited / "viclip_vision" / "1" / "vidsearch.json"
    data = json.loads(description.read_text())
    data["preprocess"]["mean"] = [0.5, 0.5, 0.5]
    description.write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="does not match its digest"):
        read_repository(RuntimeConfig(model_repository=edited))
