"""`inceptionnet bench --mode serve`: the HTTP server under load, next to the same engine offline.

The server (`inceptionnet serve`, its own process on 127.0.0.1) serves a randomly initialised network
of the benchmark's name, width and input size; clients (threads of this process) send real JPEGs (the
demo images, scaled to the input size and encoded at quality 90), one image per request. For each
client count: requests/s, images/s and the latency's median and 99th percentile. Offline, in this
process before the server starts: the same engine's images/s on batches of `--max-batch` images, the
decoding and preprocessing of one JPEG and a batch-1 forward, which a lone request's latency is set
against. Last, a mix of good and bad requests (not an image, truncated, a decompression bomb, a
wrong Content-Type) checks that the bad ones get a 4xx, none a 5xx, and that the server's resident
memory stays put.
"""

from __future__ import annotations

import dataclasses
import io
import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from inceptionnet.data import DEMO_DATA, eval_transform, read_image
from inceptionnet.data.images import read_image_bytes
from inceptionnet.factory import create_model
from inceptionnet.inference.engines import describe_engine
from inceptionnet.inference.loading import open_for_inference
from inceptionnet.inference.predict import image_files
from inceptionnet.models import Preprocessing
from inceptionnet.perf.measure import timed
from inceptionnet.serving.client import LocalServer
from inceptionnet.weights import save_weights

JPEGS = 64
MIX_CLIENTS = 8
OFFLINE_ROUNDS = 10
Log = Callable[[str], None]


@dataclass(frozen=True)
class ServeBenchConfig:
    model: str
    width: float = 1.0
    input_size: int = 299
    engine: str = "auto"
    clients: tuple[int, ...] = (1, 4, 16, 64)
    requests: int = 200  # per client count
    max_batch: int = 16
    max_wait_ms: float = 5.0
    bad_fraction: float = 0.1
    mix_requests: int = 2000


@dataclass
class LoadRow:
    clients: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int  # answers other than 200
    mean_batch: float  # images per forward, from the server's batch-size histogram

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


@dataclass
class ServeBenchResult:
    config: ServeBenchConfig
    engine: str = ""
    rows: list[LoadRow] = field(default_factory=list)
    offline_images_per_s: float = 0.0  # batches of max_batch
    decode_ms: float = 0.0  # one JPEG decoded and prepared
    forward1_ms: float = 0.0  # a batch-1 forward
    mix: dict[int, int] = field(default_factory=dict)  # status -> count
    rss_mb: tuple[float, float] = (0.0, 0.0)  # before and after the mix

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def run_serve_benchmark(cfg: ServeBenchConfig, *, log: Log) -> ServeBenchResult:
    """Offline first, then the server under each client count, then the bad-request mix."""
    result = ServeBenchResult(cfg)
    jpegs = demo_jpegs(cfg.input_size)
    with tempfile.TemporaryDirectory(prefix="servebench-") as tmp:
        weights = random_network(cfg, Path(tmp))
        offline(cfg, weights, jpegs, result, log)
        options = ["--engine", cfg.engine, "--max-batch", str(cfg.max_batch), "--max-wait-ms", str(cfg.max_wait_ms)]
        server = LocalServer(weights, options, Path(tmp) / "serve.log")
        try:
            for clients in cfg.clients:
                result.rows.append(drive(server, jpegs, clients=clients, requests=max(cfg.requests, clients)))
                log(f"{clients} clients: {result.rows[-1].per_second:.1f} requests/s")
            result.rss_mb = (server.rss_mb(), 0.0)
            result.mix = bad_mix(server, jpegs, cfg)
            result.rss_mb = (result.rss_mb[0], server.rss_mb())
        finally:
            server.stop()
    return result


def random_network(cfg: ServeBenchConfig, folder: Path) -> Path:
    """A randomly initialised network of the benchmark's name, width and input size, as a weights file."""
    torch.manual_seed(0)
    model = create_model(cfg.model, width=cfg.width)
    model.preprocessing = Preprocessing(input_size=cfg.input_size)
    return save_weights(model, folder / f"{cfg.model}.safetensors")


def demo_jpegs(input_size: int) -> list[bytes]:
    """The first JPEGS demo validation images, scaled to 8/7 of the input size (what the centre crop takes)."""
    side = round(input_size * 8 / 7)
    out = []
    for path in image_files([DEMO_DATA / "val"])[:JPEGS]:
        buffer = io.BytesIO()
        read_image(path).resize((side, side), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def offline(cfg: ServeBenchConfig, weights: Path, jpegs: list[bytes], result: ServeBenchResult, log: Log) -> None:
    """The engine alone in this process: images/s at max_batch, a batch-1 forward, one JPEG's preparation."""
    net = open_for_inference(str(weights), engine=cfg.engine, log=log).eval()
    result.engine = describe_engine(net)
    transform = eval_transform(net.preprocessing)
    device = torch.device("cpu")

    def median_s(step: Callable[[], object]) -> float:
        step()  # warm-up: OpenVINO compiles each batch size at its first call
        return statistics.median(timed(step, device) for _ in range(OFFLINE_ROUNDS))

    with torch.inference_mode():
        batch = torch.stack([transform(read_image_bytes(j)) for j in jpegs[: cfg.max_batch]])
        result.offline_images_per_s = len(batch) / median_s(lambda: net(batch))
        result.forward1_ms = 1000 * median_s(lambda: net(batch[:1]))
    result.decode_ms = 1000 * median_s(lambda: transform(read_image_bytes(jpegs[0])))


def drive(server: LocalServer, jpegs: list[bytes], *, clients: int, requests: int) -> LoadRow:
    """`requests` predictions from `clients` threads, each sending its next one when answered."""
    images_before, forwards_before = batches(server)
    seconds, answers = send_all(server, [(jpegs[i % len(jpegs)], "image/jpeg") for i in range(requests)], clients)
    images, forwards = batches(server)
    latencies = sorted(s for _, s in answers)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    failed = sum(1 for status, _ in answers if status != 200)
    mean_batch = (images - images_before) / max(1, forwards - forwards_before)
    return LoadRow(clients, requests, seconds, 1000 * statistics.median(latencies), 1000 * p99, failed, mean_batch)


def batches(server: LocalServer) -> tuple[float, int]:
    """(images, forwards) so far: the sum and count of the server's batch-size histogram."""
    samples = server.metrics()
    return samples.get("inceptionnet_batch_size_sum", 0.0), int(samples.get("inceptionnet_batch_size_count", 0))


def send_all(
    server: LocalServer, bodies: list[tuple[bytes, str]], clients: int
) -> tuple[float, list[tuple[int, float]]]:
    """(wall seconds, [(status, seconds)] per request) of sending `bodies` from `clients` threads."""
    answers: list[tuple[int, float]] = [(0, 0.0)] * len(bodies)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            body, kind = bodies[i]
            start = time.perf_counter()
            status = server.call("/v1/predict", body, {"Content-Type": kind}, timeout=120)[0]
            answers[i] = status, time.perf_counter() - start

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, answers


def bad_requests() -> list[tuple[bytes, str]]:
    """One request of each kind the server must refuse with a 4xx."""
    bomb = io.BytesIO()
    Image.new("L", (8000, 6000)).save(bomb, format="PNG")  # 48 MP in about 50 kB, above the 40 MP default
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(good, format="JPEG")
    return [
        (b"this is not an image\n", "image/jpeg"),
        (good.getvalue()[:200], "image/jpeg"),  # truncated
        (bomb.getvalue(), "image/png"),
        (good.getvalue(), "text/plain"),
    ]


def bad_mix(server: LocalServer, jpegs: list[bytes], cfg: ServeBenchConfig) -> dict[int, int]:
    """Statuses of `mix_requests` predictions, `bad_fraction` of them bad (spread evenly), from MIX_CLIENTS."""
    bad = bad_requests()
    bodies, bad_seen = [], 0
    for i in range(cfg.mix_requests):
        if int((i + 1) * cfg.bad_fraction) > bad_seen:
            bodies.append(bad[bad_seen % len(bad)])
            bad_seen += 1
        else:
            bodies.append((jpegs[i % len(jpegs)], "image/jpeg"))
    _, answers = send_all(server, bodies, MIX_CLIENTS)
    return dict(sorted(Counter(status for status, _ in answers).items()))


def format_serve_result(r: ServeBenchResult) -> str:
    """The table of docs/performance.md: load rows, the offline engine, a lone request, the bad mix."""
    c = r.config
    lines = [
        f"serve: {c.model} width {c.width:g}, {r.engine}; --max-batch {c.max_batch}, --max-wait-ms {c.max_wait_ms:g}",
        "",
        "| clients | requests | requests/s | images/s | p50 ms | p99 ms | images per forward | not 200 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r.rows:
        rate = row.per_second
        lines.append(
            f"| {row.clients} | {row.requests} | {rate:.1f} | {rate:.1f} | {row.p50_ms:.1f} | {row.p99_ms:.1f} | "
            f"{row.mean_batch:.1f} | {row.failed} |"
        )
    lone = next((row.p50_ms for row in r.rows if row.clients == 1), None)
    lines += [
        "",
        f"offline, same engine, batches of {c.max_batch}: {r.offline_images_per_s:.1f} images/s",
        f"one JPEG decoded and prepared {r.decode_ms:.1f} ms + batch-1 forward {r.forward1_ms:.1f} ms = "
        f"{r.decode_ms + r.forward1_ms:.1f} ms"
        + (f"; a lone request (1 client, p50): {lone:.1f} ms" if lone is not None else ""),
        f"bad mix: {sum(r.mix.values())} requests, {c.bad_fraction:.0%} bad: statuses "
        + ", ".join(f"{s}: {n}" for s, n in r.mix.items())
        + f"; 5xx: {sum(n for s, n in r.mix.items() if s >= 500)}; "
        f"server RSS {r.rss_mb[0]:.0f} MB before, {r.rss_mb[1]:.0f} MB after",
    ]
    return "\n".join(lines)
