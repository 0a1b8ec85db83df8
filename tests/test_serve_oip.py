"""The Open Inference Protocol of `inceptionnet serve`, spoken by Triton's own Python clients (tritonclient, HTTP
and gRPC): the same image gives the same probabilities as /v1/predict; pixels as `export --with-preprocessing`
takes them give what the image gives; top-k as Triton's classification extension; the model's config and
statistics as Triton reports them; the API key and the limits apply; a wrong request is a 4xx."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2 as T

from inceptionnet.data import eval_transform
from inceptionnet.factory import load_model
from inceptionnet.serving.client import LocalServer, free_port

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
NAME = "tiny"  # --model-name
KEY = "oip-key"


def key() -> dict[str, str]:
    """The key's header, a new dict each time: tritonclient's HTTP client adds its own headers to the one given."""
    return {"authorization": f"Bearer {KEY}"}


def jpeg(seed: int) -> bytes:
    pixels = torch.randint(0, 256, (90, 120, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels.numpy()).resize((240, 180)).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def oip(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalServer, int]:
    """A server with the gRPC service and an API key, batches of up to 8 waiting up to 150 ms."""
    grpc_port = free_port()
    key = tmp_path_factory.mktemp("oip") / "key"
    key.write_text(KEY)
    options = ["--engine", "torch", "--grpc-port", str(grpc_port), "--model-name", NAME, "--api-key-file", str(key)]
    server = LocalServer(tiny_classifier, [*options, "--max-batch", "8", "--max-wait-ms", "150"], key.with_name("log"))
    yield server, grpc_port
    server.stop()


def v1_probabilities(server: LocalServer, image: bytes) -> np.ndarray:
    """Every class's probability from /v1/predict (the tiny network has 3 classes: top-3 is all of them)."""
    status, _, body = server.call("/v1/predict", image, {"Content-Type": "image/jpeg", **key()})
    assert status == 200
    top = json.loads(body)["predictions"][0]["top"]
    return np.array([p["probability"] for p in sorted(top, key=lambda p: p["index"])], dtype=np.float32)


def image_input(module: object, images: list[bytes]) -> object:
    tensor = module.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    return tensor


def test_http_and_grpc_answer_what_v1_answers(oip: tuple[LocalServer, int]) -> None:
    server, grpc_port = oip
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    images = [jpeg(1), jpeg(2)]
    want = np.stack([v1_probabilities(server, image) for image in images])
    for client, module in ((http, httpclient), (grpc, grpcclient)):
        assert client.is_server_live(headers=key()) and client.is_model_ready(NAME, headers=key())
        result = client.infer(NAME, [image_input(module, images)], headers=key())
        np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-6)
        asked = [module.InferRequestedOutput("probabilities", class_count=2)]
        top = client.infer(NAME, [image_input(module, images)], outputs=asked, headers=key()).as_numpy("probabilities")
        labels = load_model(str(server_weights(server))).class_names
        for row, probs in zip(top, want, strict=True):
            order = np.argsort(-probs)[:2]
            assert [r.decode().split(":", 1)[1] for r in row] == [f"{i}:{labels[i]}" for i in order]
            assert [float(r.decode().split(":")[0]) for r in row] == pytest.approx(probs[order], abs=1e-5)


def server_weights(server: LocalServer) -> str:
    return server.process.args[4]  # python -m inceptionnet serve WEIGHTS ...


def test_pixels_give_what_the_image_gives(oip: tuple[LocalServer, int]) -> None:
    server, grpc_port = oip
    image = jpeg(3)
    net = load_model(server_weights(server))
    crop = T.Compose(eval_transform(net.preprocessing).transforms[:3])  # decode, resize, crop: no scaling
    pixels = crop(Image.open(io.BytesIO(image)).convert("RGB")).permute(1, 2, 0).unsqueeze(0).numpy()
    for client, module in (
        (httpclient.InferenceServerClient(f"127.0.0.1:{server.port}"), httpclient),
        (grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}"), grpcclient),
    ):
        tensor = module.InferInput("pixels", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels)
        got = client.infer(NAME, [tensor], headers=key()).as_numpy("probabilities")
        np.testing.assert_allclose(got[0], v1_probabilities(server, image), atol=1e-6)


def test_config_and_statistics_show_the_batches_formed(oip: tuple[LocalServer, int]) -> None:
    server, grpc_port = oip
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    config = grpc.get_model_config(NAME, headers=key(), as_json=True)["config"]
    assert (config["name"], int(config["max_batch_size"])) == (NAME, 8)
    assert [i["name"] for i in config["input"]] == ["image", "pixels"] and config["output"][0]["dims"] == ["3"]
    http_config = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}").get_model_config(NAME, headers=key())
    assert http_config["output"][0] == {
        "name": "probabilities",
        "data_type": "TYPE_FP32",
        "dims": [3],
        "label_filename": "labels.txt",
    }
    before = grpc.get_inference_statistics(NAME, headers=key(), as_json=True)["model_stats"][0]
    threads = [
        threading.Thread(target=lambda i=i: grpc.infer(NAME, [image_input(grpcclient, [jpeg(10 + i)])], headers=key()))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = grpc.get_inference_statistics(NAME, headers=key(), as_json=True)["model_stats"][0]
    images = int(after["inference_count"]) - int(before.get("inference_count", 0))
    batches = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert images == 8 and batches < 8, "no batch held more than one request"
    assert any(int(b["batch_size"]) > 1 for b in after["batch_stats"])


def test_the_key_and_wrong_requests_are_refused_by_status(oip: tuple[LocalServer, int]) -> None:
    server, grpc_port = oip
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: http.infer(NAME, [image_input(httpclient, [jpeg(1)])]), "API key"),
        (lambda: grpc.infer(NAME, [image_input(grpcclient, [jpeg(1)])]), "API key"),
        (lambda: http.infer("other", [image_input(httpclient, [jpeg(1)])], headers=key()), "no model 'other'"),
        (
            lambda: grpc.infer(NAME, [image_input(grpcclient, [b"not an image"])], headers=key()),
            "INVALID_ARGUMENT.*not an image",
        ),
        (lambda: http.infer(NAME, [image_input(httpclient, [jpeg(1)] * 65)], headers=key()), "--max-files"),
    ]
    for call, words in cases:
        with pytest.raises(InferenceServerException, match=words):
            call()
    status, _, body = server.call("/v2/models/tiny/infer", b'{"inputs": [{"name": "x"}]}', key())
    assert status == 400 and "name, a datatype and a shape" in json.loads(body)["error"]
    assert server.call("/v2/health/ready")[0] == 200  # health needs no key
    metrics = server.metrics(key())
    assert metrics['inceptionnet_requests_total{endpoint="grpc:ModelInfer",status="401"}'] >= 1
    assert metrics['inceptionnet_requests_total{endpoint="/v2/models/{name}/infer",status="404"}'] >= 1
