"""`HttpFace`: the HTTP app on its own port, run by uvicorn on a thread of the server's process.

The socket is bound here, before uvicorn starts (port 0: any free port, read back as `port`), so a
port in use fails `start()` at once with a ConfigError instead of in a thread nobody watches.
"""

import socket
import threading
import time

import uvicorn

from vidsearch.errors import ConfigError
from vidsearch.serving.http.app import HttpParts, create_app

START_TIMEOUT_S = 10.0


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket made with proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on connections of
    such sockets (`socket.create_server` leaves proto 0), and without it every answer waits ~40 ms
    for the client's delayed ACK between its headers and its body."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
    except OSError as err:
        sock.close()
        raise ConfigError(f"HTTP: cannot listen on {host}:{port} ({err.strerror})") from None
    return sock


class HttpFace:
    def __init__(self, parts: HttpParts) -> None:
        self._parts = parts
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = self._parts.settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> None:
        settings = self._parts.settings
        sock = _bind(settings.host, settings.http.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(self._parts), lifespan="off", access_log=False, log_config=None,
                                server_header=False,
                                timeout_graceful_shutdown=max(1, round(settings.grace_s)))
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="vidsearch-http",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError("HTTP: the server did not start (see the log)")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop accepting, let running requests finish for the grace period, and return (idempotent)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
        self._server = None
        self._thread = None
        self.port = None
