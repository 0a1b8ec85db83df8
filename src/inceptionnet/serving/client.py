"""A server started as its own process, and plain HTTP calls to it: what the serve benchmark drives and
the tests start. Only the standard library, but for `metrics`, which reads /metrics with prometheus_client's
own parser (the `serve` extra, which the server needs anyway)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

START_S = 120  # importing torch, opening the network (an ONNX export for a CPU engine) on a busy machine
STOP_S = 30


class LocalServer:
    """`python -m inceptionnet serve MODEL OPTIONS` on 127.0.0.1 and a free port, its output in `log`."""

    def __init__(self, model: str | os.PathLike[str], options: Sequence[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        argv = [sys.executable, "-m", "inceptionnet", "serve", os.fspath(model), "--port", str(self.port), *options]
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.call("/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not start in {START_S} s; its output:\n{log.read_text()}")

    def call(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request: a POST when there is a body, else a GET."""
        request = urllib.request.Request(self.url + path, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, dict(err.headers), err.read()

    def metrics(self, headers: dict[str, str] | None = None) -> dict[str, float]:
        """Every sample of /metrics, parsed by prometheus_client: {'name{label="value",...}': value}."""
        from prometheus_client.parser import text_string_to_metric_families

        status, _, body = self.call("/metrics", None, headers)
        if status != 200:
            raise OSError(f"GET /metrics answered {status}: {body[:200]!r}")
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def rss_mb(self) -> float:
        """The server's resident memory (VmRSS of /proc/PID/status), in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise OSError(f"no VmRSS in /proc/{self.process.pid}/status")

    def stop(self) -> int:
        """SIGTERM (the server drains and exits), then its exit status; killed after STOP_S."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
