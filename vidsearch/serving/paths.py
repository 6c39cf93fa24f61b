"""Path inputs, confined to the allowed roots of the server's settings.

A path is refused (PERMISSION_DENIED) when path inputs are off (no roots), when it has a `..`
component, or when it resolves, symlinks followed, outside every root: an absolute path elsewhere
and a symlink pointing out of a root alike. A relative path is taken relative to the first root.
The resolved path is what gets opened. Only after the path is known to be allowed does the server
say whether it exists (NOT_FOUND), so nothing is revealed about files outside the roots.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vidsearch.errors import NotFoundError, PathNotAllowedError, RequestError


@dataclass(frozen=True)
class AllowedPath:
    """A path input that passed: the real file, and the root it lies under."""

    path: Path
    root: Path

    @property
    def relative(self) -> str:
        """The file's path relative to its root (the default video id of an ingested file)."""
        return self.path.relative_to(self.root).as_posix()


class AllowedRoots:
    def __init__(self, roots: Sequence[Path]) -> None:
        self._roots = tuple(root.resolve(strict=True) for root in roots)
        first = self._roots[0] if self._roots else Path("/")
        self._path_max = os.pathconf(first, "PC_PATH_MAX")
        self._name_max = os.pathconf(first, "PC_NAME_MAX")

    def check(self, raw: str) -> AllowedPath:
        """The real file `raw` names, or PathNotAllowedError / NotFoundError / RequestError."""
        if not self._roots:
            raise PathNotAllowedError("path inputs are disabled on this server (no allowed roots are "
                                      "configured): send the video's bytes instead")
        if not raw.strip() or "\x00" in raw:
            raise RequestError("the path is empty or contains a NUL character")
        self._check_length(raw)
        if ".." in PurePosixPath(raw).parts:
            raise PathNotAllowedError(f"{raw!r}: '..' is not allowed in paths")
        candidate = Path(raw) if Path(raw).is_absolute() else self._roots[0] / raw
        try:
            real = candidate.resolve(strict=False)
            exists, regular = real.exists(), real.is_file()
        except OSError as err:  # a symlink loop, a name the file system refuses
            raise RequestError(f"{raw!r} cannot be looked up: {err.strerror or err}") from None
        root = next((r for r in self._roots if real.is_relative_to(r)), None)
        if root is None:
            raise PathNotAllowedError(f"{raw!r} is outside the server's allowed roots")
        if not exists:
            raise NotFoundError(f"{raw!r}: no such file under the allowed roots")
        if not regular:
            raise RequestError(f"{raw!r} is not a regular file")
        return AllowedPath(real, root)

    def _check_length(self, raw: str) -> None:
        """Refuse what the file system would (ENAMETOOLONG), with the limit named, before touching it."""
        size = len(raw.encode("utf-8", "surrogateescape"))
        if size > self._path_max:
            raise RequestError(f"the path is {size} bytes long; the limit is {self._path_max}")
        parts = PurePosixPath(raw).parts
        longest = max((len(part.encode("utf-8", "surrogateescape")) for part in parts), default=0)
        if longest > self._name_max:
            raise RequestError(f"a path component is {longest} bytes long; the limit is {self._name_max}")
