"""The server's counters in the Prometheus text format (version 0.0.4), written here: four metrics do
not need a client library, and none is installed.

Requests are counted by endpoint and status; a status of 400 or more also counts as an error by
endpoint. Latency (seconds, per endpoint) and batch size (images per forward) are histograms with
cumulative `le` buckets, as Prometheus expects.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Sequence

PREFIX = "inceptionnet"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Observations counted into fixed buckets, one series per label value."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts: dict[str, list[int]] = {}  # per label value: one count per bucket, then +Inf
        self.sums: Counter[str] = Counter()

    def observe(self, value: float, label: str = "") -> None:
        counts = self.counts.setdefault(label, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[label] += value

    def lines(self, name: str, label_name: str | None) -> list[str]:
        out = []
        for label, counts in sorted(self.counts.items()):
            head = f'{label_name}="{label}",' if label_name else ""
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                out.append(f'{name}_bucket{{{head}le="{le}"}} {running}')
            tail = f"{{{head.rstrip(',')}}}" if head else ""
            out += [f"{name}_sum{tail} {self.sums[label]:.6f}", f"{name}_count{tail} {running}"]
        return out


class Metrics:
    """What the server counts; safe to update from the event loop and from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """One answered request."""
        with self._lock:
            self.requests[endpoint, status] += 1
            if status >= 400:
                self.errors[endpoint] += 1
            self.latency.observe(seconds, endpoint)

    def batch(self, size: int) -> None:
        """One forward of `size` images."""
        with self._lock:
            self.batch_size.observe(size)

    def text(self) -> str:
        """Every metric in the text format, ending with a newline."""
        p = PREFIX
        with self._lock:
            lines = [
                f"# HELP {p}_requests_total HTTP requests answered, by endpoint and status.",
                f"# TYPE {p}_requests_total counter",
            ]
            lines += [
                f'{p}_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in sorted(self.requests.items())
            ]
            lines += [
                f"# HELP {p}_errors_total Requests answered with a status of 400 or more, by endpoint.",
                f"# TYPE {p}_errors_total counter",
            ]
            lines += [f'{p}_errors_total{{endpoint="{e}"}} {n}' for e, n in sorted(self.errors.items())]
            lines += [
                f"# HELP {p}_request_duration_seconds Time from request to response, by endpoint.",
                f"# TYPE {p}_request_duration_seconds histogram",
            ]
            lines += self.latency.lines(f"{p}_request_duration_seconds", "endpoint")
            lines += [f"# HELP {p}_batch_size Images per forward of the network.", f"# TYPE {p}_batch_size histogram"]
            lines += self.batch_size.lines(f"{p}_batch_size", None)
        return "\n".join(lines) + "\n"
