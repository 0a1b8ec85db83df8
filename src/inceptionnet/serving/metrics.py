"""The server's metrics through `prometheus_client` (the `serve` extra), in its own registry per server.
prometheus_client is imported when a Metrics is made, not with this module (as FastAPI in `create_app`).

Requests are counted by endpoint and status; a status of 400 or more also counts as an error by
endpoint. Latency (seconds, per endpoint) and batch size (images per forward) are histograms. The
gauges read the server's state when scraped: images queued for the network, requests being handled,
Grad-CAM requests running or waiting. Refusals by the server's limits are counted by reason
(`concurrency`, `queue`, `explain_busy`, `connections`, `header_timeout`, `body_timeout`,
`client_gone`: a client that left before its forward, whose images were not computed). The process's
own metrics (memory, CPU time, open files) come from prometheus_client's process collector.
"""

from __future__ import annotations

from collections.abc import Callable

PREFIX = "inceptionnet"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the format generate_latest writes
REFUSALS = ("concurrency", "queue", "explain_busy", "connections", "header_timeout", "body_timeout", "client_gone")


class Metrics:
    """What one server counts; prometheus_client's metrics are safe to update from any thread."""

    def __init__(self) -> None:
        # imported here, as FastAPI is in create_app: every other command runs without the `serve` extra
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = CollectorRegistry()
        r, p = self.registry, PREFIX
        ProcessCollector(registry=r)
        self.requests = Counter(
            f"{p}_requests", "HTTP requests answered, by endpoint and status.", ["endpoint", "status"], registry=r
        )
        self.errors = Counter(
            f"{p}_errors", "Requests answered with a status of 400 or more.", ["endpoint"], registry=r
        )
        self.latency = Histogram(
            f"{p}_request_duration_seconds",
            "Time from request to response, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{p}_batch_size", "Images per forward of the network.", buckets=BATCH_BUCKETS, registry=r
        )
        self.refusals = Counter(
            f"{p}_refusals", "Requests or connections refused by a limit, by reason.", ["reason"], registry=r
        )
        for reason in REFUSALS:
            self.refusals.labels(reason)  # every reason present from the start, at 0
        self.queue = Gauge(f"{p}_queue_images", "Images queued for the network.", registry=r)
        self.in_flight = Gauge(f"{p}_requests_in_flight", "Requests being handled.", registry=r)
        self.explaining = Gauge(f"{p}_explain_requests", "Grad-CAM requests running or waiting.", registry=r)

    def watch(
        self, *, queue: Callable[[], float], in_flight: Callable[[], float], explaining: Callable[[], float]
    ) -> None:
        """Read the gauges from the server's state at each scrape."""
        self.queue.set_function(queue)
        self.in_flight.set_function(in_flight)
        self.explaining.set_function(explaining)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """One answered request."""
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint).inc()
        self.latency.labels(endpoint).observe(seconds)

    def batch(self, size: int) -> None:
        """One forward of `size` images."""
        self.batch_size.observe(size)

    def refused(self, reason: str) -> None:
        """One request or connection refused by a limit (one of REFUSALS)."""
        self.refusals.labels(reason).inc()

    def text(self) -> str:
        """Every metric in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
