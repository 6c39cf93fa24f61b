"""The gRPC search service: `vidsearch.v1.SearchService`, health, reflection, metrics, auth and TLS.

`SearchServer(load_settings(...))` runs it (`vidsearch serve`); `vidsearch.client.SearchClient` calls
it. Models are reached through `vidsearch.runtime` only. Names are imported on first use, so the
command line can list its commands without loading gRPC.
"""

from typing import TYPE_CHECKING

from vidsearch.lazy import lazy_exports

_EXPORTS = {
    "SearchServer": "server",
    "serve": "server",
    "ServerSettings": "settings",
    "load_settings": "settings",
}

__all__ = ["SearchServer", "ServerSettings", "load_settings", "serve"]

if TYPE_CHECKING:
    from vidsearch.serving.server import SearchServer, serve
    from vidsearch.serving.settings import ServerSettings, load_settings


__getattr__ = lazy_exports(__name__, _EXPORTS)
