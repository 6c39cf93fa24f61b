"""`ModelRuntime`: the one implementation of `Runtime`, over any `Backend` (see `base`).

Text: queries are tokenized (with the tokenizer the text model's `vidsearch.json` names), looked up in the
LRU cache, and the misses go through the dynamic batcher, so concurrent requests share one model
run; a caller that batches queries itself (Search) uses `embed_text_batch`, which runs its batch
directly. Video and classification inputs (an array, or clip tensors as they are decoded) are
checked against the model's input shape and run in batches of the model's maximum batch. Encoded
video goes to the server's `viclip_video_embed` ensemble where the backend can run it and the server
has it (`decodes_on_server`); a server without it (an older repository) leaves decoding to the callers.
"""

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, DeadlineExceededError, RequestError, VideoDecodeError
from vidsearch.formats.model_repository import LOGITS, VIDEO_EMBED_INPUTS
from vidsearch.models.text_tokenizer import TextTokenizer, tokenizer_for
from vidsearch.runtime.base import Backend, Clips
from vidsearch.runtime.batching import DynamicBatcher
from vidsearch.runtime.cache import CacheStats, LruCache
from vidsearch.runtime.config import RuntimeConfig
from vidsearch.runtime.facts import RuntimeChoice, RuntimeFacts
from vidsearch.runtime.repository import ModelSpec, RepositoryModels

log = logging.getLogger(__name__)

BatchObserver = Callable[[str, int, float], None]
"""Called after every model run with the model name, the batch size and the seconds it took."""

_Row = NDArray[np.float32]
# a cached text's objects beyond its characters and its vector's data (dict node, headers), roughly
_ENTRY_OVERHEAD_BYTES = 256


def _entry_bytes(text: str, vector: _Row) -> int:
    return sys.getsizeof(text) + vector.nbytes + _ENTRY_OVERHEAD_BYTES


class ModelRuntime:
    """Serves the models of one repository through one backend (thread-safe)."""

    def __init__(self, models: RepositoryModels, backend: Backend, config: RuntimeConfig,
                 observer: BatchObserver | None = None, choice: RuntimeChoice | None = None) -> None:
        self._models = models
        self._backend = backend
        self._choice = choice or RuntimeChoice(backend.kind, "cpu", "float32", "configured")
        self._observer = observer
        self._cache: LruCache[str, _Row] = LruCache(config.cache_bytes, _entry_bytes)
        self._tokenizer: TextTokenizer | None = None
        # One thread tokenizes at a time: the tokenizer's regex matching releases the GIL, and with many
        # request threads each release hands it to another thread (measured with 32 threads: 250 µs of
        # CPU per query tokenized at once, 55 µs one at a time). The lock is taken per text, so a request
        # of many texts never holds it long, and the deadline is checked between texts.
        self._tokenize_lock = threading.Lock()
        self._batcher: DynamicBatcher[NDArray[np.int64], _Row] | None = None
        self._facts = models.facts(config)
        self._video_embed = self._server_decoding(models, backend)
        text = models.text
        if text is not None:
            info = {"kind": "clip_bpe", "context_length": text.input.shape[-1],
                    **(text.description.tokenizer or {})}
            self._tokenizer = tokenizer_for(info, text.directory)
            delay_s = config.max_delay_ms / 1000.0
            self._batcher = DynamicBatcher(self._run_text, self._facts.text_batch, delay_s,
                                           name="text-batcher")

    @property
    def kind(self) -> str:
        return self._backend.kind

    @property
    def facts(self) -> RuntimeFacts:
        return self._facts

    @property
    def choice(self) -> RuntimeChoice:
        return self._choice

    @property
    def decodes_on_server(self) -> bool:
        return self._video_embed is not None

    @staticmethod
    def _server_decoding(models: RepositoryModels, backend: Backend) -> ModelSpec | None:
        """The ensemble video is sent to, or None (and a log line saying why) where video is decoded here."""
        if not backend.decodes_video or models.vision is None:
            return None
        ensemble = models.video_embed
        if ensemble is not None and backend.ready(ensemble):
            log.info("video is decoded on the server: %s v%d", ensemble.name, ensemble.version)
            return ensemble
        where = "the repository" if ensemble is None else "the server"
        log.warning("%s has no video-decoding ensemble (viclip_video_embed; an older export?): video is "
                    "decoded in this process and sent as tensors", where)
        return None

    # -- text --------------------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str], timeout_s: float | None = None) -> NDArray[np.float32]:
        batcher = self._batcher
        if batcher is None:
            raise ConfigError(f"{self._models.root} has no text model: text queries cannot be embedded")

        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def run(tokens: list[NDArray[np.int64]]) -> list[_Row]:
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                return batcher.map(tokens, remaining)
            except TimeoutError:
                raise DeadlineExceededError(f"embedding {len(tokens)} texts ran past the deadline") from None

        return self._embed_cached(texts, deadline, run)

    def embed_text_batch(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if self._batcher is None:
            raise ConfigError(f"{self._models.root} has no text model: text queries cannot be embedded")
        return self._embed_cached(texts, None, self._run_text_sliced)

    def _embed_cached(self, texts: Sequence[str], deadline: float | None,
                      run: Callable[[list[NDArray[np.int64]]], list[_Row]]) -> NDArray[np.float32]:
        """Cached rows, and the texts not cached tokenized (one at a time, the deadline — a
        `time.monotonic()` instant — checked between them) and embedded by `run`."""
        assert self._tokenizer is not None
        rows: list[_Row | None] = [self._cache.get(text) for text in texts]
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            tokens = []
            for i in missing:
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceededError(f"no time left to embed {len(missing)} texts")
                with self._tokenize_lock:
                    tokens.append(self._tokenizer(texts[i])[0])
            for i, vector in zip(missing, run(tokens), strict=True):
                vector.flags.writeable = False
                self._cache.put(texts[i], vector)
                rows[i] = vector
        vectors = [row for row in rows if row is not None]
        return np.stack(vectors) if vectors else np.empty((0, self._facts.dim), dtype=np.float32)

    def _run_text_sliced(self, tokens: list[NDArray[np.int64]]) -> list[_Row]:
        """Model runs of at most `text_batch` texts each."""
        size = self._facts.text_batch
        slices = [tokens[start : start + size] for start in range(0, len(tokens), size)]
        return [row for part in slices for row in self._run_text(part)]

    def _run_text(self, tokens: list[NDArray[np.int64]]) -> list[_Row]:
        text = self._models.text
        assert text is not None
        output = text.description.normalized_output or ""
        began = time.monotonic()
        result = self._backend.infer(text, {text.input.name: np.stack(tokens)}, [output], None)[output]
        self._observe(text.name, len(tokens), time.monotonic() - began)
        return list(np.asarray(result, dtype=np.float32))

    # -- video -------------------------------------------------------------------------------------

    def embed_video(self, clips: Clips, timeout_s: float | None = None) -> NDArray[np.float32]:
        vision = self._require(self._models.vision, "video embeddings")
        return self._run_batches(vision, clips, vision.description.normalized_output or "", timeout_s)

    def embed_encoded(self, video: bytes, frames: Sequence[NDArray[np.int32]], timeout_s: float | None = None,
                      name: str = "<bytes>") -> NDArray[np.float32]:
        ensemble = self._video_embed
        if ensemble is None:
            raise ConfigError("this runtime does not decode video on its server: decode the clips and call "
                              "embed_video")
        output = ensemble.description.normalized_output or ""
        encoded = np.frombuffer(video, dtype=np.uint8)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        parts = [np.empty((0, ensemble.embedding_dim), dtype=np.float32)]
        for start in range(0, len(frames), ensemble.max_batch):
            batch = np.stack(frames[start : start + ensemble.max_batch]).astype(np.int32, copy=False)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError(f"{ensemble.name}: the deadline passed after {start} clips")
            # one row of the file per clip: the ensemble's contract, which DALI's decoder needs on a GPU
            inputs: dict[str, np.ndarray] = {
                VIDEO_EMBED_INPUTS[0]: np.broadcast_to(encoded, (len(batch), len(encoded))),
                VIDEO_EMBED_INPUTS[1]: batch,
            }
            began = time.monotonic()
            try:
                parts.append(self._backend.infer(ensemble, inputs, [output], remaining)[output])
            except VideoDecodeError as err:
                raise VideoDecodeError(name, err.reason) from None
            self._observe(ensemble.name, len(batch), time.monotonic() - began)
        return np.asarray(np.concatenate(parts), dtype=np.float32)

    def classify(self, clips: Clips, timeout_s: float | None = None) -> NDArray[np.float32]:
        classifier = self._require(self._models.classifier, "a classifier")
        return self._run_batches(classifier, clips, LOGITS, timeout_s)

    def _require(self, model: ModelSpec | None, what: str) -> ModelSpec:
        if model is None:
            raise ConfigError(f"{self._models.root} has no model for {what}")
        return model

    def _run_batches(self, model: ModelSpec, clips: Clips, output: str,
                     timeout_s: float | None) -> NDArray[np.float32]:
        expected = model.input.shape[1:]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        parts = []
        done = 0
        for batch in _batches(clips, model.max_batch):
            if batch.ndim != len(expected) + 1 or tuple(batch.shape[1:]) != expected:
                raise RequestError(f"{model.name} takes clips shaped {list(expected)}, "
                                   f"got {list(batch.shape[1:])}")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError(f"{model.name}: the deadline passed after {done} clips")
            done += len(batch)
            began = time.monotonic()
            parts.append(self._backend.infer(model, {model.input.name: batch}, [output], remaining)[output])
            self._observe(model.name, len(batch), time.monotonic() - began)
        width = model.output(output).shape[-1]
        joined = np.concatenate(parts) if parts else np.empty((0, width))
        return np.asarray(joined, dtype=np.float32)

    # -- housekeeping ------------------------------------------------------------------------------

    def _observe(self, model: str, size: int, seconds: float) -> None:
        if self._observer is not None:
            self._observer(model, size, seconds)

    def ready(self) -> bool:
        models = [m for m in (self._models.text, self._models.vision, self._models.classifier) if m]
        return all(self._backend.ready(m) for m in models)

    def cache_stats(self) -> CacheStats:
        return self._cache.stats()

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self._backend.close()

    def __enter__(self) -> "ModelRuntime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def _batches(clips: Clips, size: int) -> Iterator[NDArray[np.float32]]:
    """Float32 batches of at most `size` clips: slices of an array, or clips stacked as they come."""
    if isinstance(clips, np.ndarray):
        if clips.ndim == 0:
            raise RequestError("clips must be an array [n, ...] or clip tensors one by one")
        for start in range(0, len(clips), size):
            yield np.ascontiguousarray(clips[start : start + size], dtype=np.float32)
        return
    pending: list[NDArray[np.float32]] = []
    for clip in clips:
        pending.append(clip)
        if len(pending) == size:
            yield np.stack(pending).astype(np.float32, copy=False)
            pending = []
    if pending:
        yield np.stack(pending).astype(np.float32, copy=False)

