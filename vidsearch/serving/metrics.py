"""Prometheus metrics of one server, on their own registry and HTTP port.

Per RPC: requests by status code, latency histograms, requests in flight. Per model: batch sizes and
inference time (every model run, whichever backend). Live values read at scrape time: index size,
text cache size, hits and misses. A registry per server (not the global one) keeps several servers in
one process (tests, benchmarks) apart.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vidsearch.runtime.cache import CacheStats

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _LiveValues(Collector):
    """Values that are read when Prometheus scrapes, not pushed on every change."""

    def __init__(self, index_clips: Callable[[], int], cache: Callable[[], CacheStats]) -> None:
        self._index_clips = index_clips
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("vidsearch_index_clips", "Clips in the index", value=self._index_clips())
        stats = self._cache()
        yield GaugeMetricFamily("vidsearch_text_cache_entries", "Text embeddings cached", value=stats.size)
        yield GaugeMetricFamily("vidsearch_text_cache_bytes", "Bytes the cached texts and embeddings take "
                                "(at most runtime.cache_bytes)", value=stats.bytes)
        yield CounterMetricFamily("vidsearch_text_cache_hits", "Text queries answered from the cache",
                                  value=stats.hits)
        yield CounterMetricFamily("vidsearch_text_cache_misses", "Text queries that ran the model",
                                  value=stats.misses)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vidsearch_requests", "RPCs answered, by method and status code",
                                ["method", "code"], registry=self.registry)
        self.latency = Histogram("vidsearch_request_seconds", "RPC handling time, by method", ["method"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("vidsearch_requests_in_flight", "RPCs being handled", registry=self.registry)
        self.auth_failures = Counter("vidsearch_auth_failures", "Calls refused for a missing or invalid "
                                     "bearer token, by method", ["method"], registry=self.registry)
        self.rejected = Counter("vidsearch_requests_rejected", "RPCs refused because the server was full",
                                ["method"], registry=self.registry)
        self.batch_size = Histogram("vidsearch_model_batch_size", "Items per model run, by model", ["model"],
                                    buckets=_BATCH_BUCKETS, registry=self.registry)
        self.inference = Histogram("vidsearch_model_seconds", "Time of one model run, by model", ["model"],
                                   buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        """The runtime's observer: called after every model run."""
        self.batch_size.labels(model).observe(size)
        self.inference.labels(model).observe(seconds)

    def watch(self, index_clips: Callable[[], int], cache: Callable[[], CacheStats]) -> None:
        self.registry.register(_LiveValues(index_clips, cache))

    def start_http(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0: any free port); returns the port."""
        self._http, self._thread = start_http_server(port, host, self.registry)
        bound = int(self._http.server_port)
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
