"""`serve --index FILE.parquet` over real HTTP: /v1/similar answers an indexed image with itself first, the thumbnails
come only from the indexed rows (a row outside the index is a 404, a path is never accepted), both routes behind
the API key and counted in the metrics; the page shows the neighbours' thumbnails."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from inceptionnet.retrieval import embed, read_table
from inceptionnet.serving.client import LocalServer
from test_serve import multipart
from test_serve_page import browser  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
KEY = "similar-test-key"


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory, make_image_folder: Callable[..., Path], tiny_classifier: Path
) -> Path:
    """The embeddings of 12 demo images (3 classes x 4), by the served tiny network."""
    photos = make_image_folder(tmp_path_factory.mktemp("indexed"), classes=3, train=4, val=1)
    out = photos / "gallery.parquet"
    embed(photos, split="train", output=out, model=str(tiny_classifier), engine="torch")
    return out


@pytest.fixture(scope="module")
def similar_server(start_server: Callable[..., LocalServer], indexed: Path) -> LocalServer:
    return start_server("--index", str(indexed), "--api-key", KEY, "--max-wait-ms", "20")


AUTH = {"Authorization": f"Bearer {KEY}"}


def _post(server: LocalServer, path: Path, query: str = "") -> tuple[int, dict[str, Any]]:
    body, headers = multipart([(path.name, path.read_bytes())])
    status, _, raw = server.call("/v1/similar" + query, body, {**headers, **AUTH})
    return status, json.loads(raw)


def test_an_indexed_image_finds_itself_first(similar_server: LocalServer, indexed: Path) -> None:
    table = read_table(indexed)
    for row in (0, 7):
        image = Path(table.paths[row])
        status, answer = _post(similar_server, image, "?top_k=3")
        assert status == 200, answer
        (result,) = answer["results"]
        first = result["neighbours"][0]
        assert (first["row"], first["name"], first["label"]) == (row, image.name, table.labels[row])
        assert first["similarity"] == pytest.approx(1.0, abs=1e-4) and len(result["neighbours"]) == 3
        assert first["thumbnail"] == f"/v1/indexed/{row}"
        assert str(image.parent) not in json.dumps(answer)  # names, never the server's paths
    status, _, raw = similar_server.call("/v1/similar", image.read_bytes(), {"Content-Type": "image/jpeg", **AUTH})
    assert status == 200 and json.loads(raw)["results"][0]["neighbours"][0]["row"] == 7  # an image body too


def test_thumbnails_come_from_indexed_rows_only(similar_server: LocalServer, indexed: Path) -> None:
    status, headers, data = similar_server.call("/v1/indexed/3", headers=AUTH)
    assert status == 200 and {k.lower(): v for k, v in headers.items()}["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(data)) as thumb, Image.open(read_table(indexed).paths[3]) as original:
        assert thumb.size == original.size  # 32 x 32: smaller than a thumbnail, kept as it is
    for row in ("12", "99999999999999999999", "-1", "1.5", "x"):
        status, _, raw = similar_server.call(f"/v1/indexed/{row}", headers=AUTH)
        assert status == 404 and "rows are numbered 0 to 11" in json.loads(raw)["error"]
    for path in ("/v1/indexed/..%2F..%2Fetc%2Fpasswd", "/v1/indexed/%2Fetc%2Fpasswd", "/v1/indexed/../../etc/passwd"):
        status, _, raw = similar_server.call(path, headers=AUTH)
        assert status == 404 and b"root:" not in raw


def test_both_routes_need_the_key_and_are_counted(similar_server: LocalServer, indexed: Path) -> None:
    image = Path(read_table(indexed).paths[0])
    body, headers = multipart([(image.name, image.read_bytes())])
    assert similar_server.call("/v1/similar", body, headers)[0] == 401
    assert similar_server.call("/v1/indexed/0")[0] == 401
    status, _, raw = similar_server.call("/v1/similar?top_k=0", body, {**headers, **AUTH})
    assert status == 400 and "top_k must be a whole number from 1 to 100" in json.loads(raw)["error"]
    status, _, raw = similar_server.call("/v1/similar", b"not an image", {"Content-Type": "image/jpeg", **AUTH})
    assert status == 400 and "not an image of the formats read here" in json.loads(raw)["error"]
    metrics = similar_server.metrics(AUTH)
    assert metrics['inceptionnet_requests_total{endpoint="/v1/similar",status="401"}'] >= 1
    assert metrics['inceptionnet_requests_total{endpoint="/v1/indexed",status="401"}'] >= 1
    assert metrics['inceptionnet_errors_total{endpoint="/v1/similar"}'] >= 3


def test_without_an_index_similar_is_a_404_naming_the_option(server: LocalServer, tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    Image.new("RGB", (80, 80), (200, 30, 30)).save(image)
    body, headers = multipart([(image.name, image.read_bytes())])
    status, _, raw = server.call("/v1/similar", body, headers)
    assert status == 404 and "--index FILE.parquet" in json.loads(raw)["error"]
    assert server.call("/v1/indexed/0")[0] == 404


def test_the_page_shows_each_images_nearest_neighbours(
    similar_server: LocalServer,
    indexed: Path,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = Path(read_table(indexed).paths[5])
    browser.get(similar_server.url + "/")
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "key-box").is_displayed())
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.ID, "key-use").click()
    WebDriverWait(browser, 20).until(lambda d: "inception_v3" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(image))

    def loaded(d: Any) -> list[Any]:
        shown = d.find_elements(By.CSS_SELECTOR, ".neighbours figure.neighbour img")
        return shown if len(shown) == 10 and all(i.get_attribute("src").startswith("blob:") for i in shown) else []

    thumbs = WebDriverWait(browser, 30).until(loaded)
    assert browser.execute_script("return arguments[0].naturalWidth", thumbs[0]) == 32
    first = browser.find_element(By.CSS_SELECTOR, ".neighbours figure.neighbour")
    assert first.get_attribute("title") == f"{image.name} (row 5)"
