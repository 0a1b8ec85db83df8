"""The page of `inceptionnet serve` in headless Chromium: an image picked through the file input is shown with
the top class the API answers for it, and its Grad-CAM overlay; with an API key, the page asks for it."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inceptionnet.serving.client import LocalServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Any:
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            f"needs Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}); apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _picked_image(tmp_path: Path, server: LocalServer, headers: dict[str, str]) -> tuple[Path, str]:
    """A JPEG to pick in the page, and the top class the API answers for it."""
    image = tmp_path / "picked.jpg"
    pixels = np.random.default_rng(20).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image, quality=90)
    status, _, body = server.call("/v1/predict", image.read_bytes(), {"Content-Type": "image/jpeg", **headers})
    assert status == 200
    return image, json.loads(body)["predictions"][0]["top"][0]["name"]


def test_the_page_shows_the_top_class_the_api_answers(server: LocalServer, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image, expected = _picked_image(tmp_path, server, {})
    browser.get(server.url + "/")
    WebDriverWait(browser, 20).until(lambda d: "inception_v3" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(image))
    shown = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".result .top-class"))
    assert shown[0].text == expected
    overlay = WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".result img[src^='data:image/png']")
    )
    png = overlay[0].get_attribute("src").split(",", 1)[1]
    assert Image.open(io.BytesIO(base64.b64decode(png))).size == (150, 150)


def test_with_an_api_key_the_page_asks_for_it_and_then_classifies(
    start_server: Callable[..., LocalServer], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    keyed = start_server("--api-key", "s3cret")
    image, expected = _picked_image(tmp_path, keyed, {"Authorization": "Bearer s3cret"})
    browser.get(keyed.url + "/")
    box = WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "key-box"))
    WebDriverWait(browser, 20).until(lambda d: box.is_displayed())  # the card answered 401: the page asks
    assert "inception_v3" not in browser.find_element(By.ID, "model").text
    browser.find_element(By.ID, "key").send_keys("s3cret")
    browser.find_element(By.ID, "key-use").click()
    WebDriverWait(browser, 20).until(lambda d: "inception_v3" in d.find_element(By.ID, "model").text)
    assert not box.is_displayed()
    browser.find_element(By.ID, "file").send_keys(str(image))
    shown = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".result .top-class"))
    assert shown[0].text == expected
