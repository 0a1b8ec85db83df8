"""What the server gives away: a 500 answer carries an id, never the exception's text (details only in the
server's log); /v1/model names the weights file, not where it sits; the API key can come from a file or the
environment instead of the command line, which every user of the machine can read."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from inceptionnet.cli.serve import API_KEY_ENV, api_key
from inceptionnet.serving.client import LocalServer
from inceptionnet.serving.handlers import endpoint
from inceptionnet.serving.limits import Limits
from inceptionnet.serving.metrics import Metrics


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 90, 200)).save(out, format="JPEG")
    return out.getvalue()


def test_an_internal_error_is_answered_with_an_id_and_no_details(capsys: pytest.CaptureFixture[str]) -> None:
    async def failing(request: object) -> tuple[int, bytes, str]:
        raise RuntimeError("/home/alice/secret/weights.safetensors: engine exploded")

    handlers = SimpleNamespace(metrics=Metrics(), check_host=lambda request: None, limits=Limits(), in_flight=0)
    wrapped = endpoint(handlers, "/v1/predict", failing, open_to_all=True)
    response = asyncio.run(wrapped(SimpleNamespace(headers={})))
    answer = json.loads(response.body)
    assert response.status_code == 500 and "/home/alice" not in response.body.decode()
    assert answer["request_id"] == response.headers["x-request-id"] and answer["request_id"] in answer["error"]
    log = capsys.readouterr().err
    assert f"request {answer['request_id']} (/v1/predict) failed" in log and "engine exploded" in log


def test_the_model_endpoint_names_no_local_path(server: LocalServer, tiny_classifier: Path) -> None:
    status, _, body = server.call("/v1/model")
    assert status == 200 and str(tiny_classifier.parent) not in body.decode()
    assert json.loads(body)["weights_name"] == tiny_classifier.name  # the card held the whole path


def test_the_api_key_from_a_file(start_server: Callable[..., LocalServer], tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text("from-a-file\n")
    key_file.chmod(0o600)
    keyed = start_server("--api-key-file", str(key_file))
    image = {"Content-Type": "image/jpeg"}
    assert keyed.call("/v1/predict", _jpeg(), image)[0] == 401
    assert keyed.call("/v1/predict", _jpeg(), {**image, "Authorization": "Bearer from-a-file"})[0] == 200


def test_the_api_key_comes_one_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def args(key: str | None = None, key_file: str | None = None) -> argparse.Namespace:
        return argparse.Namespace(api_key=key, api_key_file=key_file)

    assert api_key(args()) is None
    monkeypatch.setenv(API_KEY_ENV, "from-the-environment")
    assert api_key(args()) == "from-the-environment"
    with pytest.raises(ValueError, match=r"given twice \(--api-key and \$INCEPTIONNET_API_KEY\)"):
        api_key(args("flag"))
    monkeypatch.delenv(API_KEY_ENV)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        api_key(args(key_file=str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="cannot read an API key from"):
        api_key(args(key_file=str(tmp_path / "missing")))


def test_a_loopback_server_answers_only_requests_addressed_to_it(server: LocalServer) -> None:
    """A page of another site whose name the browser resolved to 127.0.0.1 (DNS rebinding) sends that name."""
    port = server.url.rsplit(":", 1)[1].rstrip("/")
    status, _, body = server.call("/v1/model", None, {"Host": f"attacker.example:{port}"})
    assert status == 403 and "answers requests addressed to" in json.loads(body)["error"]
    assert server.call("/healthz", None, {"Host": f"attacker.example:{port}"})[0] == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert server.call("/v1/model", None, {"Host": host})[0] == 200, host
