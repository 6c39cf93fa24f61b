"""pymilvus, imported on first use, and its errors turned into vidsearch's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from vidsearch.errors import ClipIndexError, IndexUnavailableError, MissingDependencyError
from vidsearch.index.milvus.config import MilvusTarget

_UNAVAILABLE_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
_T = TypeVar("_T")


def pymilvus_module() -> Any:
    """pymilvus, or MissingDependencyError saying how to install it."""
    try:
        import pymilvus
    except ImportError as exc:
        raise MissingDependencyError(
            "the Milvus index needs pymilvus: pip install 'vidsearch[milvus]'"
        ) from exc
    return pymilvus


def _unavailable(exc: Exception) -> bool:
    """Whether a pymilvus error means "cannot reach the server now" rather than "refused"."""
    pymilvus = pymilvus_module()
    if isinstance(exc, pymilvus.exceptions.MilvusUnavailableException | pymilvus.exceptions.ConnectError):
        return True
    code = getattr(exc, "code", None)
    name = getattr(code, "name", str(code))
    text = str(exc)
    return (
        name in _UNAVAILABLE_CODES
        or "UNAVAILABLE" in text
        or "DEADLINE_EXCEEDED" in text
        or ("Fail connecting to server" in text)
    )


def translate(target: MilvusTarget, what: str, call: Callable[[], _T], first: Exception | None = None) -> _T:
    """Run a pymilvus call (or report its `first` failure), turning its errors into vidsearch's:
    unreachable → IndexUnavailableError, anything else the server refuses → ClipIndexError."""
    pymilvus = pymilvus_module()
    try:
        if first is not None:
            raise first
        return call()
    except pymilvus.exceptions.MilvusException as exc:
        if _unavailable(exc):
            raise IndexUnavailableError(
                f"Milvus at {target.address} cannot be reached ({what}): {exc.message}"
            ) from exc
        raise ClipIndexError(f"Milvus at {target.address} refused to {what}: {exc.message}") from exc
