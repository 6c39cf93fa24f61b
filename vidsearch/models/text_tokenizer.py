"""The tokenizer an exported text model asks for, chosen from its `vidsearch.json` description.

Export writes the description (`kind`, `context_length`, the vocabulary file beside the model and its
sha256); the runtimes and the export's own parity inputs build the tokenizer here from it, so a new
text tower needs a new `kind`, never a special case in serving.
"""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError
from vidsearch.models.tokenizer import Tokenizer
from vidsearch.models.wordpiece import WordPieceTokenizer

TextTokenizer = Callable[[Sequence[str]], NDArray[np.int64]]
KINDS = ("clip_bpe", "wordpiece")


def tokenizer_for(info: Mapping[str, Any], directory: Path) -> TextTokenizer:
    """The tokenizer `info` describes; its vocabulary file (if any) lies in `directory`."""
    kind = info.get("kind")
    context = int(info["context_length"])
    if kind == "clip_bpe":
        return Tokenizer(context_length=context)
    if kind == "wordpiece":
        path = directory / str(info["vocabulary"])
        if not path.is_file():
            raise ConfigError(f"{directory}: the WordPiece vocabulary {path.name} is missing")
        expected = info.get("vocabulary_sha256")
        if expected is not None and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise ConfigError(f"{path}: not the vocabulary the model was exported with (sha256 differs)")
        return WordPieceTokenizer(path, context, vocab_size=int(info["vocab_size"]))
    raise ConfigError(f"{directory}: unknown tokenizer kind {kind!r} (known: {', '.join(KINDS)})")
