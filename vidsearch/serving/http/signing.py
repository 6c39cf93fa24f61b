"""Signed media links: `<img>` and `<video>` cannot send an `Authorization` header.

When the server has tokens, the thumbnail and media URLs in a search answer carry an expiry and an
HMAC of path and expiry under a key made at start. Such a link works without the header until it
expires (or the server restarts): it is as good as the token that fetched the answer, for that one
path, for a while. Without tokens the links are plain.
"""

import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

LINK_LIFETIME_S = 3600


class LinkSigner:
    def __init__(self, enabled: bool) -> None:
        self._key = secrets.token_bytes(32) if enabled else b""

    def _mac(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def link(self, path: str) -> str:
        """`path`, signed when the server has tokens."""
        if not self._key:
            return path
        expires = int(time.time()) + LINK_LIFETIME_S
        return f"{path}?exp={expires}&sig={self._mac(path, expires)}"

    def valid(self, path: str, expires: str | None, signature: str | None) -> bool:
        """Whether a link's signature is ours and not expired (`path` as it was signed: still quoted)."""
        if not self._key or not expires or not signature or not expires.isdigit():
            return False
        if int(expires) < time.time():
            return False
        return hmac.compare_digest(self._mac(path, int(expires)), signature)


def segment(value: str) -> str:
    """An id as one URL path segment (clip ids hold `#`, video ids may hold `/`)."""
    return quote(value, safe="")
