"""Tokenizer cost on hostile text: a long run without a break, tokenized as before issue 18 (every run
merged whole, the whole text tokenized) and as now (runs cut at MAX_WORD_CHARS, tokenizing stopped
once the context is full), measured in one run, with a caption as the control.

BPE's cost grows with the square of a word's length (each merge rescans the word's pairs): 1,000
random letters, within the query limit, took ~0.5 s under the tokenizer lock and 48,000 took 32 s.
Each row times one text with the BPE cache emptied first.

    .venv/bin/python benchmarks/tokenizer.py          # ~10 s on 2 cores

Prints a table and writes benchmarks/results/tokenizer.json.
"""

from __future__ import annotations

import json
import random
import string
import time
from pathlib import Path

from vidsearch.models.tokenizer import Tokenizer, _clean

RESULTS = Path(__file__).parent / "results" / "tokenizer.json"
CAPTION = "a red car drives past a tall building at night while people cross the street"


def _letters(count: int, seed: int = 0) -> str:
    """Random lowercase letters without a break: few merges apply, the worst case of BPE."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(count))


def _cold(tokenizer: Tokenizer) -> Tokenizer:
    tokenizer._bpe.cache_clear()  # type: ignore[attr-defined]
    return tokenizer


def _before_s(tokenizer: Tokenizer, text: str) -> float:
    """The tokenizer before issue 18: every pre-token merged whole, the whole text tokenized, then cut."""
    _cold(tokenizer)
    started = time.perf_counter()
    for piece in tokenizer._pattern.findall(_clean(text)):
        tokenizer._merge("".join(tokenizer._byte_symbol[b] for b in piece.encode("utf-8")))
    return time.perf_counter() - started


def _now_s(tokenizer: Tokenizer, text: str) -> float:
    _cold(tokenizer)
    started = time.perf_counter()
    tokenizer([text])
    return time.perf_counter() - started


def main() -> None:
    tokenizer = Tokenizer()
    tokenizer(["warm up"])
    rows: list[dict[str, object]] = []
    for name, text in (("caption (control)", CAPTION), ("1,000 letters", _letters(1000)),
                       ("4,000 letters", _letters(4000)), ("48,000 letters", _letters(48_000))):
        before = _before_s(tokenizer, text) if len(text) <= 4000 else None  # 48,000: minutes
        rows.append({"text": name, "chars": len(text), "before_s": before, "now_s": _now_s(tokenizer, text)})
    print(f"{'text':<20} {'chars':>7} {'before':>14} {'now':>10} {'ratio':>8}")
    for row in rows:
        before, now = row["before_s"], row["now_s"]
        assert isinstance(now, float)
        shown = f"{before * 1000:>11.1f} ms" if isinstance(before, float) else f"{'-':>14}"
        ratio = f"{before / now:>7.0f}×" if isinstance(before, float) else f"{'-':>8}"
        print(f"{row['text']:<20} {row['chars']:>7} {shown} {now * 1000:>7.2f} ms {ratio}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
