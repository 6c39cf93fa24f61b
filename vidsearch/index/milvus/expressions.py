"""`SearchFilter` → a Milvus boolean expression, with every user value escaped.

Milvus 2.3 has no bound parameters for expressions (expression templates came in 2.5), so values are
written as string literals. Only letters, digits and a few harmless punctuation marks are written as
they are; every other character, quotes and backslashes included, becomes a `\\uXXXX` (or
`\\UXXXXXXXX`) escape, which the expression parser turns back into that character inside the literal.
A value therefore cannot end its literal early, and no operator it contains is ever parsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from vidsearch.errors import InvalidQueryError
from vidsearch.index.base import SearchFilter

_PLAIN = re.compile(r"[A-Za-z0-9 _.:/#@+-]")

CLIP_ID = "clip_id"
VIDEO_ID = "video_id"
TAGS = "tags"
START = "start_s"
END = "end_s"


def string_literal(value: str) -> str:
    """`value` as a double-quoted Milvus string literal that means exactly `value`."""
    out = []
    for char in value:
        if _PLAIN.fullmatch(char):
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def string_list(values: Iterable[str]) -> str:
    """A Milvus list of string literals, sorted so that equal sets give equal expressions."""
    return "[" + ", ".join(string_literal(v) for v in sorted(values)) + "]"


def number_literal(value: float) -> str:
    """A float literal Milvus parses back to the same double (never 'inf' or 'nan')."""
    if not math.isfinite(value):
        raise InvalidQueryError(f"{value} is not a finite number")
    return repr(float(value))


def filter_expression(search_filter: SearchFilter) -> str | None:
    """The expression that keeps the clips `search_filter` lets through; None when it keeps all.

    Callers handle an empty set of video ids or tags (which matches nothing) before asking.
    """
    clauses = []
    if search_filter.video_ids is not None:
        clauses.append(f"{VIDEO_ID} in {string_list(search_filter.video_ids)}")
    if search_filter.tags is not None:
        clauses.append(f"array_contains_any({TAGS}, {string_list(search_filter.tags)})")
    if search_filter.time_range is not None:
        span = search_filter.time_range
        # the half-open clip [start_s, end_s) overlaps the closed range [start, end]
        clauses.append(
            f"({START} <= {number_literal(span.end_s)} and {END} > {number_literal(span.start_s)})"
        )
    return " and ".join(clauses) or None


def matches_nothing(search_filter: SearchFilter) -> bool:
    """True when the filter names an empty set of videos or tags."""
    return (search_filter.video_ids is not None and not search_filter.video_ids) or (
        search_filter.tags is not None and not search_filter.tags
    )


def clip_ids_expression(clip_ids: Iterable[str]) -> str:
    return f"{CLIP_ID} in {string_list(clip_ids)}"


def video_ids_expression(video_ids: Iterable[str]) -> str:
    return f"{VIDEO_ID} in {string_list(video_ids)}"
