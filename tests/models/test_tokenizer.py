"""The CLIP BPE tokenizer: known ids, clean-up, truncation, output shapes, and ids equal to the reference."""

import ast
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vidsearch.errors import ConfigError
from vidsearch.models import tokenizer as tokenizer_module
from vidsearch.models.tokenizer import (
    DEFAULT_CONTEXT_LENGTH,
    EOT_TOKEN,
    MAX_WORD_CHARS,
    SOT_TOKEN,
    Tokenizer,
    get_tokenizer,
)

GOLDEN_PATH = Path(__file__).parent / "data" / "tokenizer_golden.json"
GOLDEN_CASES: list[dict[str, Any]] = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))["cases"]
LONG_CAPTION = " ".join(["a red car drives past a tall building at night"] * 6)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return get_tokenizer()


def test_constants_and_vocab_size(tok: Tokenizer) -> None:
    assert (SOT_TOKEN, EOT_TOKEN, DEFAULT_CONTEXT_LENGTH) == (49406, 49407, 32)
    assert tok.vocab_size == 49408
    assert tok.context_length == 32


def test_a_dog_known_ids(tok: Tokenizer) -> None:
    out = tok("a dog")
    assert out.shape == (1, 32)
    assert out.dtype == np.int64
    assert out[0, :4].tolist() == [49406, 320, 1929, 49407]
    assert not out[0, 4:].any()
    assert tok.encode("a dog") == [320, 1929]


@pytest.mark.parametrize("text", ["", "   ", " \t\n\r\u00a0\u3000 "])
def test_empty_and_whitespace_only(tok: Tokenizer, text: str) -> None:
    assert tok.encode(text) == []
    assert tok(text)[0].tolist() == [SOT_TOKEN, EOT_TOKEN] + [0] * 30


def test_whitespace_is_collapsed_and_case_ignored(tok: Tokenizer) -> None:
    assert tok.encode("  A\tDog\n\n RUNS ") == tok.encode("a dog runs")


@pytest.mark.parametrize("escaped", ["fish &amp; chips", "fish &amp;amp; chips", "fish & chips"])
def test_html_entities_are_unescaped(tok: Tokenizer, escaped: str) -> None:
    ids = tok.encode(escaped)
    assert ids == tok.encode("fish & chips")
    assert tok.decode(ids) == "fish & chips"


def test_double_escaped_entity_beside_markup(tok: Tokenizer) -> None:
    """ftfy leaves entities alone in text with '<', so both html.unescape passes are needed here."""
    assert tok.encode("<i>fish</i> &amp;amp; chips") == tok.encode("<i>fish</i> & chips")


def test_unicode_accents_cjk_and_emoji(tok: Tokenizer) -> None:
    for text in ["café crème brûlée", "猫が走っている", "a cat 🐱 on a sofa 🛋️"]:
        ids = tok.encode(text)
        assert ids
        assert all(0 <= i < SOT_TOKEN for i in ids)
        assert tok.decode(ids) == text


def test_mojibake_is_fixed_before_tokenizing(tok: Tokenizer) -> None:
    assert tok.encode("cafÃ©") == tok.encode("café")
    assert tok.encode("cafÃ©") != tok.encode("cafa")


def test_special_strings_map_to_special_ids(tok: Tokenizer) -> None:
    """CLIP's split pattern matches its special tokens first, in any case."""
    assert tok.encode("<|endoftext|>") == [EOT_TOKEN]
    assert tok.encode("a <|StartOfText|> b") == [320, SOT_TOKEN, 321]


def test_long_caption_is_cut_to_context_and_ends_with_eot(tok: Tokenizer) -> None:
    bpe = tok.encode(LONG_CAPTION)
    assert len(bpe) > 32
    row = tok(LONG_CAPTION)[0]
    assert row.shape == (32,)
    assert row[0] == SOT_TOKEN
    assert row[-1] == EOT_TOKEN
    assert row[1:-1].tolist() == bpe[:30]


def _rare_letters(count: int) -> str:
    """Letters that seldom merge: the worst case of BPE, whose cost grows with the square of a run."""
    return "".join("qzxjkvw"[(i * 5 + i // 7) % 7] for i in range(count))


def test_a_long_unbroken_run_is_cut_into_pieces_before_bpe() -> None:
    tok = Tokenizer()
    run = _rare_letters(2 * MAX_WORD_CHARS + 50)
    pieces = [run[i : i + MAX_WORD_CHARS] for i in range(0, len(run), MAX_WORD_CHARS)]
    assert tok.encode(run) == [i for piece in pieces for i in tok.encode(piece)]
    word = _rare_letters(MAX_WORD_CHARS)  # up to the limit, a word is one pre-token, as in CLIP
    assert tok.encode(word) != tok.encode(word[:50]) + tok.encode(word[50:])


def test_only_what_fits_the_context_is_tokenized() -> None:
    tok = Tokenizer()
    text = _rare_letters(48_000)  # took 32 s of CPU before runs were cut and tokenizing stopped early
    row = tok(text)[0]
    assert tok._bpe.cache_info().misses <= 3  # type: ignore[attr-defined]  # BPE ran on ≤ 3 pieces, not 480
    assert row[-1] == EOT_TOKEN
    assert row[1:-1].tolist() == tok.encode(text[: 4 * MAX_WORD_CHARS])[:30]


def test_batch_shapes_and_context_override(tok: Tokenizer) -> None:
    texts = ["a dog", "two cats play", "", LONG_CAPTION]
    assert tok(texts).shape == (4, 32)
    wide = tok(texts, context_length=77)
    assert wide.shape == (4, 77)
    assert np.array_equal(wide[:3, :32], tok(texts[:3]))
    assert tok([]).shape == (0, 32)
    assert tok(("a dog",)).tolist() == tok("a dog").tolist()
    assert tok("a dog", context_length=2).tolist() == [[SOT_TOKEN, EOT_TOKEN]]


def test_instance_context_length() -> None:
    short = Tokenizer(context_length=8)
    row = short(LONG_CAPTION)[0]
    assert row.shape == (8,)
    assert row[-1] == EOT_TOKEN


def test_int32_output_equals_int64(tok: Tokenizer) -> None:
    texts = ["a dog", LONG_CAPTION]
    out32 = tok(texts, dtype=np.int32)
    assert out32.dtype == np.int32
    assert np.array_equal(out32, tok(texts))
    assert tok(texts, dtype="int32").dtype == np.int32


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint64, "int8", "not-a-dtype"])
def test_other_dtypes_raise(tok: Tokenizer, dtype: Any) -> None:
    with pytest.raises(ConfigError, match="int64 or int32"):
        tok("a dog", dtype=dtype)


@pytest.mark.parametrize("length", [1, 0, -5])
def test_context_length_below_two_raises(tok: Tokenizer, length: int) -> None:
    with pytest.raises(ConfigError, match="context_length"):
        Tokenizer(context_length=length)
    with pytest.raises(ConfigError, match="context_length"):
        tok("a dog", context_length=length)


@pytest.mark.parametrize("text", ["a dog runs across the field", "two people dancing at a wedding party"])
def test_decode_round_trip(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok(text)[0]) == text


def test_decode_ends_every_piece_with_a_space(tok: Tokenizer) -> None:
    """As in CLIP, every pre-token is word-final: digits and punctuation come back spaced out."""
    assert tok.decode(tok.encode("year 2024, done!")) == "year 2 0 2 4 , done !"


def test_decode_rejects_unknown_ids(tok: Tokenizer) -> None:
    with pytest.raises(ConfigError, match="49408"):
        tok.decode([320, 49408])


def test_get_tokenizer_is_shared() -> None:
    assert get_tokenizer() is get_tokenizer()
    assert isinstance(get_tokenizer(), Tokenizer)


def test_missing_vocabulary_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt.gz"
    with pytest.raises(ConfigError, match=r"nope\.txt\.gz"):
        Tokenizer(vocab_path=missing)


def test_non_gzip_vocabulary_raises(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt.gz"
    plain.write_text("#version: 0.2\nh e\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"plain\.txt\.gz"):
        Tokenizer(vocab_path=plain)


def test_short_vocabulary_raises(tmp_path: Path) -> None:
    short = tmp_path / "short.txt.gz"
    short.write_bytes(gzip.compress(b"#version: 0.2\nh e\ni n\n"))
    with pytest.raises(ConfigError, match="not a CLIP BPE vocabulary"):
        Tokenizer(vocab_path=short)


def test_module_does_not_import_torch() -> None:
    """Light clients tokenize with numpy only; a torch import here would pull it into them."""
    tree = ast.parse(Path(tokenizer_module.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "torch"}


def test_golden_file_covers_enough_cases() -> None:
    assert len(GOLDEN_CASES) >= 30
    assert any(len(case["bpe"]) > 30 for case in GOLDEN_CASES)


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=[f"golden{i}" for i in range(len(GOLDEN_CASES))])
def test_ids_equal_reference(tok: Tokenizer, case: dict[str, Any]) -> None:
    assert tok.encode(case["text"]) == case["bpe"]
    assert tok(case["text"])[0].tolist() == case["tokens_32"]
