"""`inceptionnet serve` over real HTTP: the same probabilities as `predict`, batching, refusals, the API key,
a graceful SIGTERM; the model side (multi-label answers), the base install without FastAPI; (slow) the
serve benchmark."""

from __future__ import annotations

import base64
import http.client
import io
import json
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.perf.servebench import ServeBenchConfig, format_serve_result, run_serve_benchmark
from inceptionnet.serving.client import LocalServer
from inceptionnet.serving.service import Classifier

pytestmark = pytest.mark.usefixtures("one_thread")


def jpeg(seed: int, size: tuple[int, int] = (120, 90)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def multipart(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, dict[str, str]]:
    boundary = "----inceptionnet-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def top(answer: bytes) -> list[list[tuple[str, float]]]:
    return [[(c["name"], c["probability"]) for c in p["top"]] for p in json.loads(answer)["predictions"]]


def offline(weights: Path, files: list[Path], capsys: pytest.CaptureFixture[str]) -> list[list[tuple[str, float]]]:
    """`inceptionnet predict`'s classes and probabilities for the same files, on the same engine."""
    assert main(["predict", *map(str, files), "--model", str(weights), "--engine", "torch", "--json", "-"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    return [[(c["name"], c["probability"]) for c in r["top"]] for r in results]


def assert_same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [n for n, _ in got] == [n for n, _ in want]
    assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-5)


def test_predict_answers_what_the_predict_command_prints(
    server: LocalServer, tiny_classifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [tmp_path / f"{i}.jpg" for i in range(2)]
    for i, f in enumerate(files):
        f.write_bytes(jpeg(i))
    want = offline(tiny_classifier, files, capsys)
    status, _, raw = server.call("/v1/predict", files[0].read_bytes(), {"Content-Type": "image/jpeg"})
    assert status == 200
    assert_same(top(raw)[0], want[0])
    status, _, both = server.call("/v1/predict", *multipart([(f.name, f.read_bytes()) for f in files]))
    assert status == 200 and [p["file"] for p in json.loads(both)["predictions"]] == ["0.jpg", "1.jpg"]
    for got, expected in zip(top(both), want, strict=True):
        assert_same(got, expected)


def test_concurrent_requests_share_forwards_and_each_gets_its_own_answer(
    server: LocalServer, tiny_classifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [tmp_path / f"{i}.jpg" for i in range(8)]
    for i, f in enumerate(files):
        f.write_bytes(jpeg(10 + i))
    want = offline(tiny_classifier, files, capsys)
    answers: dict[int, tuple[int, bytes]] = {}

    def post(i: int) -> None:
        status, _, body = server.call("/v1/predict", files[i].read_bytes(), {"Content-Type": "image/jpeg"})
        answers[i] = status, body

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(len(files)):
        assert answers[i][0] == 200
        assert_same(top(answers[i][1])[0], want[i])
    metrics = server.metrics()
    assert metrics["inceptionnet_batch_size_count"] > metrics['inceptionnet_batch_size_bucket{le="1.0"}'], (
        "no forward took more than one image"
    )


def test_model_card_health_metrics_and_explain(server: LocalServer, tiny_classifier: Path) -> None:
    assert json.loads(server.call("/healthz")[2]) == {"status": "ok"}
    assert (
        json.loads(server.call("/v1/model")[2])
        == create_model("inception_v3", weights=tiny_classifier)
        .card.replace(weights_name=tiny_classifier.name)
        .to_dict()
    )
    status, _, body = server.call("/v1/explain?class=dog", *multipart([("a.jpg", jpeg(3))]))
    answer = json.loads(body)
    assert status == 200 and (answer["index"], answer["name"]) == (1, "dog")
    status, _, body = server.call("/v1/explain?class=zebra", *multipart([("a.jpg", jpeg(3))]))
    assert status == 400 and "no class named 'zebra'" in json.loads(body)["error"]
    assert Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"]))).size == (150, 150)
    status, headers, _ = server.call("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    metrics = server.metrics()  # prometheus_client's own parser
    assert metrics['inceptionnet_requests_total{endpoint="/v1/explain",status="200"}'] == 1
    assert metrics['inceptionnet_request_duration_seconds_count{endpoint="/v1/explain"}'] >= 2
    assert metrics["process_resident_memory_bytes"] > 0 and metrics["inceptionnet_queue_images"] == 0


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (2000, 1000)).save(out, format="PNG")  # 2 MP in a few kB, above the server's 1 MP
    return out.getvalue()


def _ico_with_a_large_png() -> bytes:
    """An ICO whose directory says 16 x 16, holding a 2 MP PNG: Pillow's ICO parser would decode the PNG."""
    png = _bomb()
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def _oversize(server: LocalServer, *, declared: bool) -> tuple[int, bytes]:
    """Over 1 MB to a 1 MB server: 1.5 MB declared by Content-Length (refused before the body is sent, as a client
    sending `Expect: 100-continue` would wait), or sent in chunks without one (the streamed size is checked)."""
    url = urllib.parse.urlparse(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        if declared:
            connection.putrequest("POST", "/v1/predict")
            connection.putheader("Content-Type", "image/jpeg")
            connection.putheader("Content-Length", str(3 * 2**19))
            connection.endheaders()
        else:
            chunks = (b"\xff" * 65536 for _ in range(17))
            connection.request("POST", "/v1/predict", chunks, {"Content-Type": "image/jpeg"}, encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


BAD = {
    "not an image": (415, lambda s: s.call("/v1/predict", b"hello", {"Content-Type": "text/plain"})),
    "not readable": (400, lambda s: s.call("/v1/predict", b"hello", {"Content-Type": "image/png"})),
    "truncated": (400, lambda s: s.call("/v1/predict", *multipart([("t.jpg", jpeg(4)[:600])]))),
    "no file field": (400, lambda s: s.call("/v1/predict", *multipart([("a.jpg", jpeg(4))], field="image"))),
    "decompression bomb": (413, lambda s: s.call("/v1/predict", _bomb(), {"Content-Type": "image/png"})),
    "a format not read": (400, lambda s: s.call("/v1/predict", *multipart([("i.ico", _ico_with_a_large_png())]))),
    "too large": (413, lambda s: _oversize(s, declared=True)),
    "too large, streamed": (413, lambda s: _oversize(s, declared=False)),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_request_gets_a_4xx_naming_it_and_the_next_is_served(server: LocalServer, case: str) -> None:
    expected, send = BAD[case]
    reply = send(server)
    status, body = reply[0], reply[-1]
    assert status == expected
    assert json.loads(body)["error"]
    assert server.call("/v1/predict", jpeg(5), {"Content-Type": "image/jpeg"})[0] == 200


def test_api_key_guards_everything_but_health(start_server: Callable[..., LocalServer]) -> None:
    keyed = start_server("--api-key", "s3cret")
    image = {"Content-Type": "image/jpeg"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        for path, body in (("/v1/model", None), ("/metrics", None), ("/v1/predict", jpeg(6))):
            status, answer_headers, answer = keyed.call(path, body, {**image, **headers} if body else headers)
            assert status == 401 and answer_headers["www-authenticate"] == "Bearer"
            assert "API key" in json.loads(answer)["error"]
    good = {"Authorization": "Bearer s3cret"}
    assert keyed.call("/v1/predict", jpeg(6), {**image, **good})[0] == 200
    assert keyed.call("/v1/model", None, good)[0] == 200
    assert keyed.call("/healthz")[0] == 200 and keyed.call("/")[0] == 200  # the page holds no data; it asks for the key


def test_sigterm_answers_the_request_in_flight_and_exits_0(start_server: Callable[..., LocalServer]) -> None:
    slow = start_server("--max-batch", "64", "--max-wait-ms", "1500")  # a lone image waits 1.5 s for company
    answer: list[int] = []
    request = threading.Thread(
        target=lambda: answer.append(slow.call("/v1/predict", jpeg(7), {"Content-Type": "image/jpeg"})[0])
    )
    request.start()
    time.sleep(0.5)
    slow.process.send_signal(signal.SIGTERM)
    request.join(timeout=30)
    assert answer == [200]
    assert slow.stop() == 0


def test_multi_label_answers_labels_above_their_thresholds() -> None:
    model = create_model("inception_v3", width=0.125, num_classes=3)
    model.apply_card(model.card.replace(label_mode="multi", thresholds=(0.2, 0.9, 0.5), class_names=("a", "b", "c")))
    classifier = Classifier(model, device=torch.device("cpu"))
    answer = classifier.result(torch.tensor([0.3, 0.8, 0.6]), "x.jpg")
    assert [label["name"] for label in answer["labels"]] == ["c", "a"]  # most probable first; b is under 0.9
    assert [(p["index"], p["name"]) for p in answer["probabilities"]] == [(0, "a"), (1, "b"), (2, "c")]
    assert [p["probability"] for p in answer["probabilities"]] == pytest.approx([0.3, 0.8, 0.6])
    assert classifier.forward(torch.zeros(2, 3, 75, 75)).sum(1).max() > 1  # sigmoids, not a softmax


def test_base_install_runs_without_fastapi(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ("fastapi", "uvicorn", "prometheus_client")
    code = f"import sys, inceptionnet.cli; sys.exit(any(m in sys.modules for m in {extra}))"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    assert main(["serve", "inception_v3"]) == 2
    assert "pip install 'inceptionnet[serve]'" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_benchmark_drives_the_server_and_the_bad_mix_gets_no_5xx() -> None:
    config = ServeBenchConfig(
        model="inception_v3", width=0.125, input_size=75, engine="torch", clients=(1, 4), requests=20, mix_requests=60
    )
    result = run_serve_benchmark(config, log=lambda message: None)
    assert [row.clients for row in result.rows] == [1, 4] and all(row.failed == 0 for row in result.rows)
    assert result.offline_images_per_s > 0 and result.forward1_ms > 0 and result.decode_ms > 0
    assert sum(result.mix.values()) == 60 and result.mix[200] == 54
    assert {400, 413, 415} <= set(result.mix) and all(s < 500 for s in result.mix)
    assert "| 4 | 20 |" in format_serve_result(result)


def test_openvino_batches_are_padded_to_powers_of_two_and_answered_unpadded() -> None:
    model = create_model("inception_v3", width=0.125, num_classes=3).eval()
    plain = Classifier(model, device=torch.device("cpu"), max_batch=12)
    model.engine = "openvino"  # what a network on OpenVINO says; it compiles each batch size it meets
    padded = Classifier(model, device=torch.device("cpu"), max_batch=12)
    assert [padded.run_size(n) for n in range(1, 13)] == [1, 2, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12]
    assert [plain.run_size(n) for n in (3, 5)] == [3, 5]
    x = torch.randn(3, 3, 75, 75)
    assert torch.allclose(padded.forward(x), plain.forward(x), atol=1e-6) and padded.forward(x).shape == (3, 3)


def test_metrics_pass_prometheus_own_checker(server: LocalServer, debian_tool: Callable[[str, str], str]) -> None:
    """promtool (Debian's prometheus package) reads /metrics as Prometheus will, and finds nothing to fix."""
    promtool = debian_tool("promtool", "prometheus")
    server.call("/v1/predict", jpeg(5), {"Content-Type": "image/jpeg"})
    text = server.call("/metrics")[2]
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
