"""`inceptionnet bench --mode serve` cross-checked by a load generator written elsewhere (hey), and the Open
Inference Protocol's path against `/v1` at the same load.

    PYTHONPATH=src .venv/bin/python benchmarks/serve_crosscheck.py --out benchmarks/results/serve/crosscheck.json

1. `bench --mode serve` (its own server, clients as threads of its process, a new connection per request)
   of the demo-size network (Inception-ResNet-v1, 1/4 width, 75 px) at 1, 16 and 64 clients.
2. A server of the same network and options; `hey` at the same client counts and requests, one demo JPEG
   per request to `/v1/predict`: with a new connection per request (`-disable-keepalive`, as the bench's
   clients) and with kept-alive connections (hey's default, as most HTTP clients).
3. The same JPEG through `POST /v2/models/NAME/infer` (the binary tensor data extension, as tritonclient
   sends it), with kept-alive connections, at the same client counts.
4. At saturation (64 clients, kept-alive), `/v1` and `/v2` in turn, ROUNDS times each, against a server
   pinned to one core (torch, one thread) with hey on the other: the ratio of the two rates in each pair
   of rounds, whose median the docs give. On the 2 cores shared by hey and the server, one run of each
   moves by 10% and more (steps 1-3 show it), more than the difference being measured.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import struct
import subprocess
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch

from inceptionnet import __version__
from inceptionnet.perf.measure import machine
from inceptionnet.perf.servebench import ServeBenchConfig, demo_jpegs, random_network, run_serve_benchmark
from inceptionnet.serving.client import LocalServer

ROUNDS = 5
CONFIG = ServeBenchConfig(
    model="inception_resnet_v1", width=0.25, input_size=75, engine="auto", clients=(1, 16, 64), requests=640
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the result's JSON file")
    args = p.parse_args()
    bench = run_serve_benchmark(CONFIG, log=print)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jpeg = folder / "image.jpg"
        jpeg.write_bytes(demo_jpegs(CONFIG.input_size)[0])
        infer = folder / "infer.bin"
        header = oip_body(jpeg.read_bytes(), infer)
        options = ["--engine", CONFIG.engine, "--max-batch", str(CONFIG.max_batch), "--max-wait-ms", "5"]
        server = LocalServer(random_network(CONFIG, folder), options, folder / "serve.log")
        try:
            name = json.loads(server.call("/v1/model")[2])["model_name"]
            oip = ["-H", f"Inference-Header-Content-Length: {header}"]

            def v2(clients: int) -> dict:
                return hey(server, f"/v2/models/{name}/infer", infer, "application/octet-stream", clients, oip)

            runs = {
                "v1_new_connections": [
                    hey(server, "/v1/predict", jpeg, "image/jpeg", c, ["-disable-keepalive"]) for c in CONFIG.clients
                ],
                "v1_keep_alive": [hey(server, "/v1/predict", jpeg, "image/jpeg", c) for c in CONFIG.clients],
                "v2_keep_alive": [v2(c) for c in CONFIG.clients],
            }
        finally:
            server.stop()
        runs["saturation_rounds"] = saturation(folder, jpeg, infer, header)
    result = {
        "machine": machine(torch.device("cpu")),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "versions": {"inceptionnet": __version__, "torch": torch.__version__, "hey": "Debian 0.1.4"},
        "command": f"PYTHONPATH=src python benchmarks/serve_crosscheck.py --out {args.out}",
        "config": asdict(CONFIG),
        "engine": bench.engine,
        "bench": [
            {
                "clients": r.clients,
                "requests": r.requests,
                "per_s": r.per_second,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "failed": r.failed,
            }
            for r in bench.rows
        ],
        **runs,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


def saturation(folder: Path, jpeg: Path, infer: Path, header: int) -> list[dict]:
    """ROUNDS pairs of `/v1` and `/v2` runs at the largest client count, the server on core 0, hey on core 1."""
    os.environ["OMP_NUM_THREADS"] = "1"
    options = ["--engine", "torch", "--max-batch", str(CONFIG.max_batch), "--max-wait-ms", "5"]
    server = LocalServer(random_network(CONFIG, folder), options, folder / "pinned.log")
    try:
        for task in Path(f"/proc/{server.process.pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), {0})  # every thread; threads started later inherit it
        name = json.loads(server.call("/v1/model")[2])["model_name"]
        oip = ["-H", f"Inference-Header-Content-Length: {header}"]
        clients, path = max(CONFIG.clients), f"/v2/models/{name}/infer"
        return [
            {
                "v1": hey(server, "/v1/predict", jpeg, "image/jpeg", clients, cpus="1"),
                "v2": hey(server, path, infer, "application/octet-stream", clients, oip, cpus="1"),
            }
            for _ in range(ROUNDS)
        ]
    finally:
        server.stop()


def oip_body(image: bytes, out: Path) -> int:
    """Write an inference request of one `image` with the binary tensor data extension; the JSON header's size."""
    element = struct.pack("<I", len(image)) + image
    head = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(element)}}
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    header = json.dumps(head).encode()
    out.write_bytes(header + element)
    return len(header)


def hey(
    server: LocalServer,
    path: str,
    body: Path,
    content_type: str,
    clients: int,
    extra: list[str] = (),
    cpus: str | None = None,
) -> dict:
    """One `hey` run of CONFIG.requests requests (at least one per client): rate, latency, statuses; `cpus`:
    the cores hey runs on (taskset)."""
    requests = max(CONFIG.requests, clients)
    argv = ["taskset", "-c", cpus] if cpus else []
    argv += ["hey", "-n", str(requests), "-c", str(clients), "-m", "POST", "-T", content_type, "-D", str(body), *extra]
    start = time.perf_counter()
    out = subprocess.run([*argv, "-o", "csv", server.url + path], capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - start
    rows = list(csv.DictReader(io.StringIO(out)))
    latencies = sorted(1000 * float(r["response-time"]) for r in rows)
    return {
        "clients": clients,
        "requests": len(rows),
        "per_s": len(rows) / seconds,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "failed": sum(1 for r in rows if r["status-code"] != "200"),
    }


if __name__ == "__main__":
    main()
