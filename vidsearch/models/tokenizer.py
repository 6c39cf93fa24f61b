"""OpenAI CLIP's byte-level BPE tokenizer (vocabulary 49,408), with numpy output and no torch.

The serving path and light clients tokenize queries for ONNX Runtime or Triton, so this module needs
only numpy, ftfy and regex. Its ids equal the reference tokenizer's (a golden test checks them).
"""

import functools
import gzip
import html
import importlib.resources
import itertools
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import ftfy
import numpy as np
import numpy.typing as npt
import regex

from vidsearch.errors import ConfigError

SOT_TOKEN = 49406
EOT_TOKEN = 49407
DEFAULT_CONTEXT_LENGTH = 32

_VOCAB_PACKAGE = "vidsearch.models"
_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 48,894 merges: 256 byte symbols, 256 word-final ones, the merges and 2 specials.
_NUM_MERGES = 49152 - 256 - 2
_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
_WORD_END = "</w>"
# Captions reuse a small vocabulary of words; this bounds memory on a long-running server.
_BPE_CACHE_SIZE = 1 << 16
_ID_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))
# BPE's cost grows with the square of a pre-token's length (each merge rescans its pairs): a run of
# 48,000 letters took 32 s. Longer runs are cut into pieces of this many characters before BPE, as a
# robust tokenizer must; no word of real text is this long, so real text tokenizes as CLIP's does.
MAX_WORD_CHARS = 100
# Specials first, then contractions, letter runs, single digits and runs of anything else but spaces.
_SPLIT_PATTERN = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"


def _byte_symbols() -> list[str]:
    """One printable character per byte value (indexed by byte), so BPE never sees spaces or controls."""
    printable = {
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    }
    symbols: list[str] = []
    shifted = 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def _read_merges(vocab_path: str | Path | None) -> list[tuple[str, str]]:
    """Read the merge list in rank order; a wrong file fails here rather than giving shifted ids."""
    if vocab_path is None:
        source: Any = importlib.resources.files(_VOCAB_PACKAGE).joinpath(_VOCAB_FILE)
    else:
        source = Path(vocab_path)
    try:
        lines = gzip.decompress(source.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the BPE vocabulary {source}: {exc}") from exc
    pairs = [line.split() for line in lines[1 : 1 + _NUM_MERGES]]
    if len(pairs) < _NUM_MERGES or any(len(pair) != 2 for pair in pairs):
        raise ConfigError(
            f"{source} is not a CLIP BPE vocabulary: expected a header line and {_NUM_MERGES} merge lines "
            f"of two symbols each"
        )
    return [(first, second) for first, second in pairs]


def _clean(text: str) -> str:
    """Repair mojibake, undo (double) HTML escaping, collapse whitespace and lower-case, as CLIP does."""
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


def _check_context_length(context_length: int) -> int:
    if context_length < 2:
        raise ConfigError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
    return context_length


class Tokenizer:
    """Turns captions and queries into CLIP token ids: `[start] + BPE + [end]`, zero-padded."""

    def __init__(self, vocab_path: str | Path | None = None, context_length: int = DEFAULT_CONTEXT_LENGTH):
        self._context_length = _check_context_length(context_length)
        merges = _read_merges(vocab_path)
        self._byte_symbol = _byte_symbols()
        base = sorted(self._byte_symbol)
        vocab = [*base, *(symbol + _WORD_END for symbol in base), *("".join(m) for m in merges), *_SPECIALS]
        self._ids = {token: index for index, token in enumerate(vocab)}
        self._specials = {token: self._ids[token] for token in _SPECIALS}
        self._ranks = {pair: rank for rank, pair in enumerate(merges)}
        self._pattern = regex.compile(_SPLIT_PATTERN, regex.IGNORECASE)
        symbol_byte = {symbol: byte for byte, symbol in enumerate(self._byte_symbol)}
        self._id_bytes = [self._token_bytes(token, symbol_byte) for token in vocab]
        # Per instance and thread-safe: gRPC handlers tokenize from several threads.
        cache = functools.lru_cache(maxsize=_BPE_CACHE_SIZE)
        self._bpe: Callable[[str], tuple[int, ...]] = cache(self._merge)

    @property
    def vocab_size(self) -> int:
        return len(self._ids)

    @property
    def context_length(self) -> int:
        return self._context_length

    def encode(self, text: str, max_ids: int | None = None) -> list[int]:
        """BPE ids of `text` after CLIP's clean-up, without start and end tokens; with `max_ids`, only
        the first that many (the rest of the text is not tokenized at all)."""
        ids: list[int] = []
        for match in self._pattern.finditer(_clean(text)):
            word = match.group()
            for start in range(0, len(word), MAX_WORD_CHARS):
                piece = word[start : start + MAX_WORD_CHARS]
                ids.extend(self._bpe("".join(self._byte_symbol[byte] for byte in piece.encode("utf-8"))))
                if max_ids is not None and len(ids) >= max_ids:
                    return ids[:max_ids]
        return ids

    def decode(self, ids: Iterable[int] | npt.NDArray[np.integer[Any]]) -> str:
        """Text of `ids`; start tokens are skipped and the first end token stops it, so padded rows work."""
        chunks: list[bytes] = []
        for value in ids:
            token_id = int(value)
            if token_id == SOT_TOKEN:
                continue
            if token_id == EOT_TOKEN:
                break
            if not 0 <= token_id < len(self._id_bytes):
                last = len(self._id_bytes) - 1
                raise ConfigError(f"token id {token_id} is outside the vocabulary (0..{last})")
            chunks.append(self._id_bytes[token_id])
        return b"".join(chunks).decode("utf-8", errors="replace").rstrip(" ")

    def __call__(
        self,
        texts: str | Sequence[str],
        context_length: int | None = None,
        dtype: npt.DTypeLike = np.int64,
    ) -> npt.NDArray[np.signedinteger[Any]]:
        """Token ids of shape [len(texts), context]; too long texts are cut and still end with EOT."""
        length = self._context_length if context_length is None else _check_context_length(context_length)
        out_dtype = self._check_dtype(dtype)
        batch = [texts] if isinstance(texts, str) else texts
        out = np.zeros((len(batch), length), dtype=out_dtype)
        for row, text in enumerate(batch):
            ids = [SOT_TOKEN, *self.encode(text, length - 2), EOT_TOKEN]
            out[row, : len(ids)] = ids
        return out

    @staticmethod
    def _check_dtype(dtype: npt.DTypeLike) -> np.dtype[Any]:
        try:
            resolved = np.dtype(dtype)
        except TypeError as exc:
            raise ConfigError(f"dtype must be int64 or int32, got {dtype!r}") from exc
        if resolved not in _ID_DTYPES:
            raise ConfigError(f"dtype must be int64 or int32, got {resolved}")
        return resolved

    @staticmethod
    def _token_bytes(token: str, symbol_byte: dict[str, int]) -> bytes:
        """Bytes a vocabulary entry stands for; a word-final entry ends with a space."""
        word_end = token.endswith(_WORD_END)
        core = token.removesuffix(_WORD_END)
        return bytes(symbol_byte[symbol] for symbol in core) + (b" " if word_end else b"")

    def _merge(self, piece: str) -> tuple[int, ...]:
        """Apply the merges to one pre-token (in byte symbols), lowest rank first, as CLIP does."""
        if piece in self._specials:
            return (self._specials[piece],)
        parts = [*piece[:-1], piece[-1] + _WORD_END]
        while len(parts) > 1:
            best = min(itertools.pairwise(parts), key=lambda p: self._ranks.get(p, _NUM_MERGES))
            if best not in self._ranks:
                break
            merged: list[str] = []
            index = 0
            while index < len(parts):
                if index + 1 < len(parts) and (parts[index], parts[index + 1]) == best:
                    merged.append(parts[index] + parts[index + 1])
                    index += 2
                else:
                    merged.append(parts[index])
                    index += 1
            parts = merged
        return tuple(self._ids[part] for part in parts)


@functools.cache
def get_tokenizer() -> Tokenizer:
    """The shared default tokenizer, so a process reads the vocabulary once."""
    return Tokenizer()
