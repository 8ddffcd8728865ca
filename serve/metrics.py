"""Prometheus metrics of one app (its own registry, so that several apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    """Requests by model/endpoint/status, latency, batch sizes, queue depth and wait, tokens."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("edgebert_requests", "HTTP requests", ["model", "endpoint", "status"], registry=r)
        self.latency = Histogram("edgebert_request_duration_seconds", "time from request to response",
                                 ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_requests = Histogram("edgebert_batch_requests", "requests merged into one pipeline call",
                                        ["model"], buckets=SIZE_BUCKETS, registry=r)
        self.batch_texts = Histogram("edgebert_batch_texts", "texts (items) in one pipeline call", ["model"],
                                     buckets=SIZE_BUCKETS, registry=r)
        self.queue_depth = Gauge("edgebert_queue_depth", "requests waiting for the model's worker", ["model"],
                                 registry=r)
        self.queue_wait = Histogram("edgebert_queue_wait_seconds", "time a request waited before its call ran",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("edgebert_tokens", "input tokens accepted (special tokens included)", ["model"],
                              registry=r)
        self.ready = Gauge("edgebert_ready", "1 once every model is loaded and warmed", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
