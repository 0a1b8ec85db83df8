"""The server under hostile traffic, over real HTTP: every limit refuses at once (4xx, or 503 with Retry-After,
a JSON error) and is counted in /metrics, while the requests within the limits are answered.

The application and uvicorn run in this process (a thread), with the network's forward or Grad-CAM held on
an event, so that "a request is in the forward" or "an explain is running" is a state the test sets, not a
race it hopes for.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import uvicorn
from PIL import Image

from inceptionnet.factory import load_model
from inceptionnet.inference.explain import explain
from inceptionnet.serving.app import create_app
from inceptionnet.serving.client import LocalServer, free_port
from inceptionnet.serving.connections import deadline_protocol
from inceptionnet.serving.limits import Limits
from inceptionnet.serving.metrics import Metrics
from inceptionnet.serving.service import Classifier, Explainer
from inceptionnet.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")
JPEG = {"Content-Type": "image/jpeg"}


def jpeg(size: tuple[int, int] = (96, 64), seed: int = 0) -> bytes:
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=torch.Generator().manual_seed(seed))
    out = io.BytesIO()
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(out, format="JPEG")
    return out.getvalue()


def multipart(files: list[bytes]) -> tuple[bytes, dict[str, str]]:
    parts = [
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="%d.jpg"\r\nContent-Type: image/jpeg\r\n\r\n' % i
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + b"--b--\r\n", {"Content-Type": "multipart/form-data; boundary=b"}


class Held:
    """A function that waits for `release()` before running (as many calls as arrive), counting its calls."""

    def __init__(self, run: Callable[..., Any]) -> None:
        self.run, self.gate, self.calls, self.entered = run, threading.Event(), [], threading.Event()

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        self.entered.set()
        assert self.gate.wait(60), "the test never released the held call"
        return self.run(*args)

    def release(self) -> None:
        self.gate.set()


class InProcess(LocalServer):
    """The application under uvicorn with the server's connection protocol, in a thread of this process."""

    def __init__(self, app: Any, limits: Limits, metrics: Metrics) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, http=deadline_protocol(limits, metrics), log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)

    def stop(self) -> int:
        self.server.should_exit = True
        self.thread.join(30)
        return 0

    def wait_for(self, sample: str, value: float) -> None:
        """Until /metrics shows `sample` at `value` (the server's state the test waits for)."""
        deadline = time.monotonic() + 30
        while self.metrics().get(sample) != value:
            assert time.monotonic() < deadline, f"{sample} never reached {value}: {self.metrics().get(sample)}"
            time.sleep(0.02)


@pytest.fixture
def serve(tiny_classifier: Path) -> Iterator[Callable[..., tuple[InProcess, Held, Held]]]:
    """`serve(**limits)`: the tiny network served with those limits; its forward and Grad-CAM are Held."""
    started: list[InProcess] = []
    held: list[Held] = []

    def start(**limits: Any) -> tuple[InProcess, Held, Held]:
        net = load_model(str(tiny_classifier))
        explainer = Explainer(
            load_model(str(tiny_classifier)), device=torch.device("cpu"), queue=limits.pop("queue", 2)
        )
        classifier = Classifier(net, device=torch.device("cpu"))
        forward, overlay = Held(classifier.forward), Held(explainer._overlay)
        classifier.forward, explainer._overlay = forward, overlay
        held.extend([forward, overlay])
        chosen, metrics = Limits(**limits), Metrics()
        app = create_app(classifier, explainer, max_batch=8, max_wait=0.0, limits=chosen, metrics=metrics)
        started.append(InProcess(app, chosen, metrics))
        return started[-1], forward, overlay

    yield start
    for h in held:
        h.release()
    for server in started:
        server.stop()


def post_in_thread(server: LocalServer, path: str, body: bytes, headers: dict[str, str]) -> Callable[[], Any]:
    """Send in a thread; the returned function joins it and gives (status, headers, body)."""
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(server.call(path, body, headers)))
    thread.start()

    def result() -> Any:
        thread.join(60)
        return answer[0]

    return result


def assert_busy(answer: tuple[int, dict[str, str], bytes], status: int, words: str) -> None:
    code, headers, body = answer
    assert (
        code == status
        and {k.lower(): v for k, v in headers.items()}["retry-after"] == "1"
        and words in json.loads(body)["error"]
    )


def test_explains_run_one_at_a_time_on_their_own_thread_and_a_flood_is_refused(serve: Callable[..., Any]) -> None:
    server, forward, overlay = serve(queue=1)
    forward.release()
    body, headers = multipart([jpeg()])
    running = post_in_thread(server, "/v1/explain", body, headers)
    waiting = post_in_thread(server, "/v1/explain", body, headers)
    server.wait_for("inceptionnet_explain_requests", 2)
    for _ in range(3):  # the flood: refused at once, nothing decoded
        assert_busy(server.call("/v1/explain", body, headers), 429, "Grad-CAM requests are running or waiting")
    assert server.call("/v1/predict", jpeg(), JPEG)[0] == 200  # predictions go on while Grad-CAM is held
    overlay.release()
    assert running()[0] == waiting()[0] == 200 and len(overlay.calls) == 2
    assert server.metrics()['inceptionnet_refusals_total{reason="explain_busy"}'] == 3


def test_a_full_queue_answers_503_and_the_queued_are_answered(serve: Callable[..., Any]) -> None:
    server, forward, _ = serve(max_queue=2)
    first = post_in_thread(server, "/v1/predict", jpeg(seed=1), JPEG)
    assert forward.entered.wait(30)  # the first image is in the forward, held
    queued = [post_in_thread(server, "/v1/predict", jpeg(seed=2 + i), JPEG) for i in range(2)]
    server.wait_for("inceptionnet_queue_images", 2)
    assert_busy(server.call("/v1/predict", jpeg(), JPEG), 503, "would pass 2")
    assert server.call("/healthz")[0] == 200
    forward.release()
    assert [a()[0] for a in (first, *queued)] == [200, 200, 200]
    assert server.metrics()['inceptionnet_refusals_total{reason="queue"}'] == 1


def test_requests_past_the_concurrency_limit_get_503_and_health_still_answers(serve: Callable[..., Any]) -> None:
    server, forward, _ = serve(max_concurrent=2)
    busy = [post_in_thread(server, "/v1/predict", jpeg(seed=i), JPEG) for i in range(2)]
    server.wait_for("inceptionnet_requests_in_flight", 2)
    assert_busy(server.call("/v1/model"), 503, "handles 2 requests, its limit")
    assert server.call("/healthz")[0] == 200 and server.call("/metrics")[0] == 200
    forward.release()
    assert [a()[0] for a in busy] == [200, 200]
    assert server.metrics()['inceptionnet_refusals_total{reason="concurrency"}'] == 1


def test_the_images_of_a_client_that_left_are_not_computed(serve: Callable[..., Any]) -> None:
    server, forward, _ = serve()
    first = post_in_thread(server, "/v1/predict", jpeg(seed=1), JPEG)
    assert forward.entered.wait(30)
    data = jpeg(seed=2)
    with socket.create_connection(("127.0.0.1", server.port)) as gone:  # sends a whole request, then leaves
        head = "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        head += f"Content-Length: {len(data)}"
        gone.sendall(head.encode() + b"\r\n\r\n" + data)
        server.wait_for("inceptionnet_queue_images", 1)
    server.wait_for('inceptionnet_refusals_total{reason="client_gone"}', 1)
    forward.release()
    assert first()[0] == 200 and server.call("/v1/predict", jpeg(seed=3), JPEG)[0] == 200
    assert [len(batch) for (batch,) in forward.calls] == [1, 1]  # the first and the last: none for the one gone


def test_too_many_images_or_pixels_in_one_request_are_refused_before_decoding(serve: Callable[..., Any]) -> None:
    server, forward, _ = serve(max_files=2, max_pixels=10_000, max_request_pixels=15_000)
    forward.release()
    status, _, body = server.call("/v1/predict", *multipart([jpeg()] * 3))
    assert status == 413 and "more than 2 images in one request (--max-files)" in json.loads(body)["error"]
    status, _, body = server.call("/v1/predict", *multipart([jpeg((96, 64)), jpeg((110, 90))]))  # 6144 + 9900 px
    assert status == 413 and "have 0.016 MP together" in json.loads(body)["error"]
    assert "limit of 0.015 MP per request (--max-request-megapixels)" in json.loads(body)["error"]
    assert not forward.calls
    assert server.call("/v1/predict", *multipart([jpeg((96, 64))]))[0] == 200


def _closed_by_server(sock: socket.socket) -> bytes:
    """What the server sent before closing the connection (b"" when it sent nothing)."""
    sock.settimeout(20)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_slow_header_or_an_idle_connection_is_cut_off(serve: Callable[..., Any]) -> None:
    server, forward, _ = serve(header_timeout=0.5)
    forward.release()
    with (
        socket.create_connection(("127.0.0.1", server.port)) as idle,
        socket.create_connection(("127.0.0.1", server.port)) as slow,
    ):
        slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and the rest never comes
        assert _closed_by_server(slow) == b"" and _closed_by_server(idle) == b""
    assert server.metrics()['inceptionnet_refusals_total{reason="header_timeout"}'] == 2
    assert server.call("/v1/predict", jpeg(), JPEG)[0] == 200  # a prompt client is served


def test_a_slow_body_gets_408_and_its_connection_closed(serve: Callable[..., Any]) -> None:
    server, forward, _ = serve(body_timeout=0.5)
    forward.release()
    with socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n")
        slow.sendall(b"Content-Length: 5000\r\n\r\n" + jpeg()[:100])  # 100 bytes of 5000, then nothing
        answer = _closed_by_server(slow)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower()
    assert "did not arrive within 0.5 s (--body-timeout)" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert server.metrics()['inceptionnet_refusals_total{reason="body_timeout"}'] == 1


def test_connections_past_the_limit_get_503_and_are_closed(serve: Callable[..., Any]) -> None:
    server, forward, _ = serve(max_connections=3, header_timeout=30)
    forward.release()
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            answer = _closed_by_server(extra)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer
        assert "connections open, its limit" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while server.call("/healthz")[0] != 200:  # served again once the held connections are gone
        assert time.monotonic() < deadline
    assert server.metrics()['inceptionnet_refusals_total{reason="connections"}'] == 1


def test_overlays_explain_the_weights_the_predictions_use(tiny_classifier: Path, tmp_path: Path) -> None:
    """Replacing the weights file of a running server (a run still training) changes neither its predictions
    nor its overlays: both come from the weights read at start."""
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(tiny_classifier.read_bytes())
    running = LocalServer(weights, ["--engine", "torch"], tmp_path / "serve.log")
    try:
        torch.manual_seed(7)
        other = load_model(str(tiny_classifier))
        for p in other.parameters():
            p.data.normal_()
        save_weights(other, weights)  # the file now holds other weights
        body, headers = multipart([jpeg()])
        status, _, answer = running.call("/v1/explain?class=dog", body, headers)
    finally:
        running.stop()
    picture = Image.open(io.BytesIO(jpeg())).convert("RGB")
    (at_start,) = explain(load_model(str(tiny_classifier)), [picture], target="dog", top_k=1, input_size=150)
    (replaced,) = explain(load_model(str(weights)), [picture], target="dog", top_k=1, input_size=150)
    assert abs(replaced.probability - at_start.probability) > 1e-3  # the two weights tell apart
    assert status == 200 and json.loads(answer)["probability"] == pytest.approx(at_start.probability, abs=1e-5)


def test_the_limits_come_from_the_command_line(start_server: Callable[..., LocalServer]) -> None:
    server = start_server("--max-files", "2", "--max-request-megapixels", "40", "--header-timeout", "5")
    status, _, body = server.call("/v1/predict", *multipart([jpeg()] * 3))
    assert status == 413 and "more than 2 images" in json.loads(body)["error"]
    assert server.call("/v1/predict", *multipart([jpeg()] * 2))[0] == 200
    assert set(server.metrics()) >= {f'inceptionnet_refusals_total{{reason="{r}"}}' for r in ("queue", "client_gone")}
    with pytest.raises(ValueError, match="must allow one image of the largest size"):
        Limits(max_pixels=40_000_000, max_request_pixels=10_000_000)
