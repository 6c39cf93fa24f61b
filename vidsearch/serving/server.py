"""`SearchServer`: the search service on one address, with its runtime, index, health, reflection and metrics.

    with SearchServer(settings) as server:      # or server.start() … server.stop()
        client = SearchClient(server.address)

Start order: metrics, runtime (models loaded, or the Triton server found ready), index (checked
against the runtime's model), gRPC server bound (port 0: any free port, read back as `port`), the
HTTP API and page (`http.port`, read back as `http_port`), then health SERVING. Stop order is the
reverse: health NOT_SERVING first, so load balancers stop sending, then running requests get
`grace_s` to finish. A watcher keeps the health status in step with the runtime (a Triton server
that goes away turns the service NOT_SERVING until it is back) and the index (a large snapshot whose
digests are checked in the background is NOT_SERVING until they pass).
"""

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vidsearch.errors import ConfigError
from vidsearch.index import ClipIndex
from vidsearch.runtime import open_runtime
from vidsearch.runtime.base import Runtime
from vidsearch.serving.exposure import exposure_warnings
from vidsearch.serving.http.app import HttpParts
from vidsearch.serving.http.face import HttpFace
from vidsearch.serving.http.thumbnails import ThumbnailStore
from vidsearch.serving.index_handle import open_served_index
from vidsearch.serving.interceptors import ServiceInterceptor
from vidsearch.serving.metrics import Metrics
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.proto.vidsearch.v1 import search_pb2_grpc as pb_grpc
from vidsearch.serving.servicer import SearchServicer
from vidsearch.serving.settings import ServerSettings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SearchService"].full_name
HEALTH_POLL_S = 5.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _HealthWatcher(threading.Thread):
    """Polls the runtime and sets the health status of the service (and of the server, "")."""

    def __init__(self, runtime: Runtime, index: ClipIndex, servicer: health.HealthServicer) -> None:
        super().__init__(name="vidsearch-health", daemon=True)
        self._runtime = runtime
        self._index = index
        self._servicer = servicer
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(HEALTH_POLL_S):
            self.update()

    def update(self) -> None:
        """SERVING when the runtime answers and the index is ready (its files checked)."""
        status = _SERVING if self._runtime.ready() and self._index.ready() else _NOT_SERVING
        for service in ("", SERVICE_NAME):
            self._servicer.set(service, status)

    def stop(self) -> None:
        self._halt.set()
        self.join()


class SearchServer:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http: HttpFace | None = None
        self.metrics = Metrics()
        self._server: grpc.Server | None = None
        self._servicer: SearchServicer | None = None
        self._runtime: Runtime | None = None
        self._index: ClipIndex | None = None
        self._health = health.HealthServicer(experimental_non_blocking=True)
        self._watcher: _HealthWatcher | None = None

    @property
    def address(self) -> str:
        """host:port to connect to."""
        if self.port is None:
            raise ConfigError("the server is not running")
        return _host_port(self.settings.host, self.port)

    def start(self) -> None:
        settings = self.settings
        try:
            for problem in exposure_warnings(settings):
                log.warning("%s", problem)
            if settings.metrics_port is not None:
                self.metrics_port = self.metrics.start_http(settings.metrics_host or settings.host,
                                                            settings.metrics_port)
            self._runtime = open_runtime(settings.runtime, observer=self.metrics.observe_batch)
            self._index = open_served_index(settings.index_location, self._runtime.facts,
                                            create=settings.create_index, persist=settings.persist_changes,
                                            device=settings.index_device,
                                            verify_max_bytes=settings.verify_on_open_max_bytes,
                                            milvus_index=settings.milvus.new_index)
            index, runtime = self._index, self._runtime
            self.metrics.watch(lambda: len(index), runtime.cache_stats)
            self._servicer = SearchServicer(self._runtime, self._index, settings)
            self._server = self._grpc_server(self._servicer)
            self._server.start()
            if settings.http.enabled:
                # beside the index directory; for a Milvus collection, NAME.thumbnails in the working dir
                where = Path(settings.index) if isinstance(settings.index, Path) else Path(
                    settings.index.rsplit("/")[-1])
                thumbnails = ThumbnailStore(where.with_name(where.name + ".thumbnails"))
                self.http = HttpFace(HttpParts(self._servicer, index, settings, thumbnails))
                self.http.start()
        except BaseException:
            self.stop(grace_s=0)
            raise
        self._watcher = _HealthWatcher(self._runtime, index, self._health)
        self._watcher.update()
        self._watcher.start()
        log.info("vidsearch serving %s on %s (runtime %s; index %s, %d clips)%s", runtime.facts.model_name,
                 self.address, runtime.choice.describe(), settings.index, len(index),
                 f"; the page and HTTP API on {self.http.url}" if self.http else "")

    def _grpc_server(self, servicer: SearchServicer) -> grpc.Server:
        settings, limits = self.settings, self.settings.limits
        threads = settings.handler_threads
        interceptor = ServiceInterceptor(settings.auth.all_tokens(), limits.max_concurrent_rpcs, self.metrics,
                                         settings.auth.failure_log_interval_s)
        server = grpc.server(
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vidsearch-rpc"),
            interceptors=[interceptor],
            options=[("grpc.max_receive_message_length", limits.max_message_bytes),
                     ("grpc.max_send_message_length", limits.max_message_bytes),
                     ("grpc.so_reuseport", 0)],
            # no gRPC-wide limit (`maximum_concurrent_rpcs`): it refused health checks with the rest under
            # load. The interceptor refuses service RPCs beyond their slots at once, and the threads left
            # over (handler_threads − max_concurrent_rpcs) answer health checks and refusals
        )
        pb_grpc.add_SearchServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME],
                                            server)
        address = _host_port(settings.host, settings.port)
        key_pair = settings.tls.key_pair()
        if key_pair is not None:
            self.port = server.add_secure_port(address, grpc.ssl_server_credentials([key_pair]))
        else:
            self.port = server.add_insecure_port(address)
        if not self.port:
            raise ConfigError(f"cannot listen on {address} (in use, or not an address of this machine)")
        return server

    def stop(self, grace_s: float | None = None) -> None:
        """Stop serving (idempotent): health NOT_SERVING, RPCs drained for `grace_s`, resources released."""
        grace = self.settings.grace_s if grace_s is None else grace_s
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        self._health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._servicer is not None:
            self._servicer.close()
            self._servicer = None
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
        if self._index is not None:
            self._index.close()
            self._index = None
        self.metrics.stop_http()
        self.port = None

    def wait(self) -> None:
        """Block until the server stops."""
        if self._server is not None:
            self._server.wait_for_termination()

    def __enter__(self) -> "SearchServer":
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def serve(settings: ServerSettings) -> None:
    """Run until SIGINT or SIGTERM (what `vidsearch serve` does)."""
    server = SearchServer(settings)
    stopping = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping (grace %.0f s)", number, settings.grace_s)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server.start()
    try:
        stopping.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
