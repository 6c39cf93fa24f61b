"""BERT's uncased WordPiece tokenizer (InternVideo2's text tower), from the checkpoint's `vocab.txt`.

The `tokenizers` library does the splitting (the same rules as Hugging Face's `BertTokenizer` for
`bert-large-uncased`: clean-up, CJK characters split, lower-case, accents stripped); this module only
fixes the output to the model's contract: `[CLS] ids… [SEP]`, cut to `context_length` (still ending
with `[SEP]`) and padded with 0, int64 — the official evaluation's `max_length=40` padding.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vidsearch.errors import ConfigError, MissingDependencyError

VOCABULARY_FILE = "vocab.txt"
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def read_vocabulary(path: Path) -> list[str]:
    """The tokens of a `vocab.txt`, one per line, id = line number; refuses a file without BERT's specials."""
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the WordPiece vocabulary {path}: {err}") from err
    missing = [s for s in SPECIALS if s not in tokens]
    if missing or tokens[:1] != ["[PAD]"]:
        raise ConfigError(f"{path} is not a BERT WordPiece vocabulary: it must start with [PAD] (id 0) "
                          f"and hold {list(SPECIALS)}; missing {missing}")
    return tokens


class WordPieceTokenizer:
    """Texts → int64 ids [N, context_length] for an InternVideo2 text tower."""

    def __init__(self, vocab_path: str | Path, context_length: int = 40,
                 vocab_size: int | None = None) -> None:
        try:
            from tokenizers import BertWordPieceTokenizer
        except ImportError as err:
            raise MissingDependencyError("WordPiece tokenizing needs `tokenizers`: pip install tokenizers") \
                from err
        path = Path(vocab_path)
        tokens = read_vocabulary(path)
        if vocab_size is not None and len(tokens) != vocab_size:
            raise ConfigError(f"{path} has {len(tokens)} tokens but the text tower's embedding table has "
                              f"{vocab_size} rows: it is not this model's vocabulary")
        if context_length < 2:
            raise ConfigError(f"context_length must be at least 2 ([CLS] and [SEP]), got {context_length}")
        self._context_length = context_length
        self._vocab_size = len(tokens)
        self._tokenizer = BertWordPieceTokenizer(str(path), lowercase=True, strip_accents=None,
                                                 clean_text=True, handle_chinese_chars=True)
        self._tokenizer.enable_truncation(max_length=context_length)
        self._tokenizer.enable_padding(length=context_length, pad_id=0, pad_token="[PAD]")

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def context_length(self) -> int:
        return self._context_length

    def __call__(self, texts: str | Sequence[str]) -> npt.NDArray[np.int64]:
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            return np.zeros((0, self._context_length), dtype=np.int64)
        encoded: list[Any] = self._tokenizer.encode_batch(batch)
        return np.array([e.ids for e in encoded], dtype=np.int64)
