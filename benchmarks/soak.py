"""Load and soak of `inceptionnet serve` under hostile traffic, driven by a load generator written elsewhere.

    PYTHONPATH=src .venv/bin/python benchmarks/soak.py --out benchmarks/results/serve/soak.json

`hey` (Debian's package) sends the requests. The server runs a small network (an eighth-width Inception-v3
at 75 px, random weights: the server's own costs dominate, as they do for any network under a flood
of refusals) on the torch engine, with the default limits but for the two deadlines, shortened to 2 s
so that each slow client is cut off within the run. Steps, all in one server:

1. One request of each hostile kind, read back: each must be a 4xx or a 503 with a JSON error.
2. Warm-up: 1,000 good requests from 58 clients; the server's resident memory after it.
3. Baseline: 9,000 good requests (one JPEG each) from 58 clients: their latency.
4. The same 9,000 good requests from 58 clients, while 6 hostile clients send about 1,000 requests
   spread over the same time: five `hey` clients, each going through bombs of every format read
   (PNG, JPEG, WebP, GIF, TIFF: real images of 49 MP, a few kB to 1 MB each; BMP: a header claiming
   49 MP), forms of 65 images (past --max-files), forms of three 35 MP images (past the 100 MP of one
   request) and Grad-CAM floods; one client of its own (hey cannot send slowly) alternating a body
   sent in part (408 after 2 s) and a header sent in part (the connection closed after 2 s).
   The server's memory is sampled every 0.5 s.

The result: every status by kind, the good requests' p50/p99 in both runs (and their ratio), the
memory after warm-up, at its peak and at the end, and the server's refusal counters.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import torch
from PIL import Image

from inceptionnet import __version__, create_model
from inceptionnet.models import Preprocessing
from inceptionnet.perf.measure import machine
from inceptionnet.serving.client import LocalServer
from inceptionnet.weights import save_weights

GOOD_CLIENTS, HOSTILE_CLIENTS = 58, 6
DEADLINE_S = 2
SERVER_OPTIONS = ["--engine", "torch", "--header-timeout", str(DEADLINE_S), "--body-timeout", str(DEADLINE_S)]
BOMB_SIDE = 7000  # 49 MP: past the default 40 MP
JPEG = "image/jpeg"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the result's JSON file")
    p.add_argument("--good", type=int, default=9000, help="good requests per run (default 9000)")
    p.add_argument("--hostile", type=int, default=1000, help="hostile requests, about (default 1000)")
    args = p.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: apt-get install hey")
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(Path(tmp), good=args.good, hostile=args.hostile)
    result["command"] = f"PYTHONPATH=src python benchmarks/soak.py --out {args.out}"
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "hostile_statuses"}, indent=1))


def soak(folder: Path, *, good: int, hostile: int) -> dict:
    bodies = write_bodies(folder)
    server = LocalServer(tiny_network(folder), SERVER_OPTIONS, folder / "serve.log")
    try:
        first = {kind: read_refusal(server, kind, *bodies[kind]) for kind in HOSTILE_KINDS}
        hey(server, "/v1/predict", bodies["good"], requests=1000, clients=GOOD_CLIENTS)
        rss_warm = server.rss_mb()
        baseline = hey(server, "/v1/predict", bodies["good"], requests=good, clients=GOOD_CLIENTS)
        seconds = baseline["seconds"]
        with Sampler(server) as peak, ThreadPoolExecutor(HOSTILE_CLIENTS) as pool:
            share = (hostile - round(seconds / DEADLINE_S)) // (HOSTILE_CLIENTS - 1)
            flood = [pool.submit(hostile_client, server, bodies, share, seconds) for _ in range(HOSTILE_CLIENTS - 1)]
            slow = pool.submit(slow_client, server, seconds)
            mixed = hey(server, "/v1/predict", bodies["good"], requests=good, clients=GOOD_CLIENTS)
            statuses = sum((f.result() for f in flood), Counter()) + slow.result()
        rss_end, metrics = server.rss_mb(), server.metrics()
    finally:
        server.stop()
    refusals = {k.split('"')[1]: v for k, v in metrics.items() if k.startswith("inceptionnet_refusals_total")}
    return {
        "machine": machine(torch.device("cpu")),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "versions": {"inceptionnet": __version__, "torch": torch.__version__, "hey": "Debian 0.1.4"},
        "config": {"server_options": SERVER_OPTIONS, "good_clients": GOOD_CLIENTS, "hostile_clients": HOSTILE_CLIENTS},
        "first_refusals": first,
        "baseline": baseline,
        "mixed": mixed,
        "hostile_statuses": {f"{kind} {status}": n for (kind, status), n in sorted(statuses.items())},
        "rss_mb": {"after_warmup": rss_warm, "peak": peak.mb, "end": rss_end},
        "refusals": refusals,
    }


def tiny_network(folder: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("inception_v3", width=0.125, num_classes=10)
    model.preprocessing = Preprocessing(input_size=75)
    return save_weights(model, folder / "tiny.safetensors")


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def multipart(files: list[bytes]) -> bytes:
    parts = [
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="%d"\r\n\r\n%s\r\n' % (i, f)
        for i, f in enumerate(files)
    ]
    return b"".join(parts) + b"--b--\r\n"


FORM = "multipart/form-data; boundary=b"
HOSTILE_KINDS = (
    "bomb-png",
    "bomb-jpeg",
    "bomb-webp",
    "bomb-gif",
    "bomb-tiff",
    "bomb-bmp",
    "65-files",
    "105-mp",
    "explain",
)


def write_bodies(folder: Path) -> dict[str, tuple[Path, str, str]]:
    """{kind: (body file, Content-Type, path)} of the good request and each hostile kind."""
    good = encoded(Image.effect_mandelbrot((120, 90), (-2, -1.2, 1, 1.2), 60).convert("RGB"), "JPEG")
    big = Image.new("L", (BOMB_SIDE, BOMB_SIDE))
    bmp = bytearray(encoded(Image.new("RGB", (1, 1)), "BMP"))
    bmp[18:26] = BOMB_SIDE.to_bytes(4, "little") * 2  # BITMAPINFOHEADER width, height: the header's claim only
    pixels35 = encoded(Image.new("L", (5916, 5916)), "PNG")  # 35 MP each, three in one form
    raw = {
        "good": (good, JPEG, "/v1/predict"),
        "bomb-png": (encoded(big, "PNG"), "image/png", "/v1/predict"),
        "bomb-jpeg": (encoded(big, "JPEG", quality=5), JPEG, "/v1/predict"),
        "bomb-webp": (encoded(big, "WEBP", lossless=True), "image/webp", "/v1/predict"),
        "bomb-gif": (encoded(big.convert("P"), "GIF"), "image/gif", "/v1/predict"),
        "bomb-tiff": (encoded(big, "TIFF", compression="tiff_deflate"), "image/tiff", "/v1/predict"),
        "bomb-bmp": (bytes(bmp), "image/bmp", "/v1/predict"),
        "65-files": (multipart([good] * 65), FORM, "/v1/predict"),
        "105-mp": (multipart([pixels35] * 3), FORM, "/v1/predict"),
        "explain": (multipart([good]), FORM, "/v1/explain"),
    }
    bodies = {}
    for kind, (data, kind_type, path) in raw.items():
        (folder / kind).write_bytes(data)
        bodies[kind] = (folder / kind, kind_type, path)
    return bodies


def read_refusal(server: LocalServer, kind: str, body: Path, content_type: str, path: str) -> dict:
    """The status and JSON error of one request of a hostile kind (one explain alone is served: 200)."""
    status, _, answer = server.call(path, body.read_bytes(), {"Content-Type": content_type})
    error = json.loads(answer).get("error") if answer.startswith(b"{") else None
    return {"status": status, "bytes": body.stat().st_size, "error": error}


def hey(
    server: LocalServer,
    path: str,
    body: tuple[Path, str, str],
    *,
    requests: int,
    clients: int,
    rate: float | None = None,
) -> dict:
    """`hey`'s run: its wall time, every status, and the latency percentiles (ms) of its 200s."""
    file, content_type, _ = body
    argv = ["hey", "-n", str(requests), "-c", str(clients), "-m", "POST", "-T", content_type, "-D", str(file)]
    argv += ["-q", f"{rate:g}"] if rate else []
    start = time.perf_counter()
    out = subprocess.run([*argv, "-o", "csv", server.url + path], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    statuses = Counter(row["status-code"] for row in rows)
    ok = sorted(1000 * float(row["response-time"]) for row in rows if row["status-code"] == "200")
    cut = statistics.quantiles(ok, n=100) if len(ok) > 1 else [0.0] * 99
    return {
        "requests": len(rows),
        "clients": clients,
        "seconds": seconds,
        "statuses": dict(statuses),
        "p50_ms": statistics.median(ok) if ok else None,
        "p99_ms": cut[98],
    }


def hostile_client(server: LocalServer, bodies: dict, share: int, seconds: float) -> Counter:
    """One client going through every hostile kind, `share` requests in all, spread over `seconds`."""
    each = max(1, share // len(HOSTILE_KINDS))
    statuses: Counter = Counter()
    for kind in HOSTILE_KINDS:
        run = hey(
            server, bodies[kind][2], bodies[kind], requests=each, clients=1, rate=each * len(HOSTILE_KINDS) / seconds
        )
        statuses.update({(kind, status): n for status, n in run["statuses"].items()})
    return statuses


def slow_client(server: LocalServer, seconds: float) -> Counter:
    """Bodies and headers sent in part, in turn, for `seconds`: what the server answers (or "closed")."""
    statuses: Counter = Counter()
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        kind = "slow-body" if n % 2 == 0 else "slow-header"
        head = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(head + (b"Content-Length: 5000\r\n\r\n" + b"\xff" * 100 if kind == "slow-body" else b""))
            s.settimeout(10 * DEADLINE_S)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        statuses[kind, answer.split(b" ", 2)[1].decode() if answer else "closed"] += 1
        n += 1
    return statuses


class Sampler:
    """The server's largest resident memory, sampled every 0.5 s while the block runs."""

    def __init__(self, server: LocalServer) -> None:
        self.server, self.mb, self._stop = server, 0.0, threading.Event()

    def __enter__(self) -> Sampler:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.mb = max(self.mb, self.server.rss_mb())


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
