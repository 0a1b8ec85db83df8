"""Grad-CAM explanations: overlays for the top-k or an asked class, the target layer of each network, and the
quadrant check's mechanics (on untrained networks); the check on a trained demo run is slow."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inceptionnet import create_model, list_models
from inceptionnet.card import Preprocessing
from inceptionnet.cli import main
from inceptionnet.inference.explain import explain, target_layer, write_overlays
from inceptionnet.inference.pointing import GREY, peak_quadrant, pointing_rate, quadrant_image
from inceptionnet.models import InceptionNetwork
from inceptionnet.weights import save_weights

DEMO_VAL = Path(__file__).resolve().parents[1] / "src" / "inceptionnet" / "assets" / "demo" / "val"
CLASSES = ("cat", "dog", "ship")


def _tiny() -> InceptionNetwork:
    # inception_v3 at 1/8 width and 75 px: the fastest network of the package.
    torch.manual_seed(0)
    model = create_model("inception_v3", width=0.125, num_classes=len(CLASSES))
    model.class_names = CLASSES
    model.preprocessing = Preprocessing(input_size=75)
    return model


@pytest.fixture(scope="module")
def images() -> list[Path]:
    return [sorted((DEMO_VAL / c).iterdir())[0] for c in ("cat", "ship")]


def test_overlays_for_the_top_k_classes(images: list[Path], tmp_path: Path) -> None:
    found = explain(_tiny(), images, top_k=2, input_size=107)
    assert [(Path(e.source).name, e.rank) for e in found] == [(p.name, r) for p in images for r in (1, 2)]
    for first, second in (found[0:2], found[2:4]):
        assert first.probability >= second.probability and first.index != second.index
    for e in found:
        assert e.image.shape == (107, 107, 3) and e.image.dtype == np.uint8
        assert e.heatmap.shape == e.image.shape[:2]  # the heat map covers the image the network saw
        assert e.heatmap.min() >= 0.0 and e.heatmap.max() <= 1.0
        assert e.name == CLASSES[e.index]
    written = write_overlays(found, tmp_path / "out")
    assert len(set(written)) == 4 and all(p.is_file() for p in written)
    assert written[0].name.startswith(f"{images[0].stem}_1_{found[0].name}_") and written[0].suffix == ".png"
    assert np.asarray(Image.open(written[0])).shape == (107, 107, 3)


def test_an_asked_class_by_name_or_index(images: list[Path]) -> None:
    model = _tiny()
    by_name = explain(model, images, target="dog", top_k=3)
    assert [(e.rank, e.index, e.name) for e in by_name] == [(1, 1, "dog")] * 2
    assert by_name[0].heatmap.shape == (75, 75)  # the network's own input size by default
    by_index = explain(model, [Image.open(images[0])], target="1")
    assert by_index[0].source == "image 0"
    np.testing.assert_allclose(by_index[0].heatmap, by_name[0].heatmap, atol=1e-5)


def test_bad_classes_and_files_are_errors(images: list[Path], tmp_path: Path) -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"no class named 'zebra'; name one of its classes \(cat, dog, ship\)"):
        explain(model, images, target="zebra")
    with pytest.raises(ValueError, match="class 3 is not one of the 3 classes"):
        explain(model, images, target=3)
    with pytest.raises(ValueError, match="top-k must be between 1 and the 3 classes"):
        explain(model, images, top_k=4)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.jpg is not a readable image"):
        explain(model, [bad])


def test_without_grad_cam_the_error_names_the_extra(images: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # as if not installed: importing it fails
    with pytest.raises(ValueError, match=r"pip install 'inceptionnet\[explain\]'"):
        explain(_tiny(), images)


@pytest.mark.parametrize("name", list_models())
def test_the_target_layer_is_the_last_map_before_pooling(name: str) -> None:
    model = create_model(name, width=0.125, num_classes=3).eval()
    expected = "conv_7b" if name == "inception_resnet_v2" else "blocks_c"
    assert target_layer(model) is model.get_submodule(expected)
    seen = []
    handle = target_layer(model).register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 107, 107))
    handle.remove()
    assert torch.equal(seen[0], features)


def test_peak_quadrant_of_synthetic_heat_maps() -> None:
    for quadrant, (row, col) in enumerate([(3, 5), (10, 50), (40, 2), (63, 63)]):
        heat = np.zeros((64, 64), dtype=np.float32)
        heat[row, col] = 1.0
        assert peak_quadrant(heat) == quadrant
    heat = np.zeros((7, 7), dtype=np.float32)
    heat[3, 3] = 1.0  # the middle row and column of an odd map count as bottom and right
    assert peak_quadrant(heat) == 3


def test_quadrant_images_put_the_image_in_one_quadrant_of_grey() -> None:
    red = Image.new("RGB", (10, 20), (255, 0, 0))
    canvas = np.asarray(quadrant_image(red, 1, 100))
    assert canvas.shape == (100, 100, 3)
    assert (canvas[:50, 50:] == (255, 0, 0)).all()
    assert (canvas[50:] == GREY).all() and (canvas[:, :50] == GREY).all()
    with pytest.raises(ValueError, match="quadrant must be 0 to 3"):
        quadrant_image(red, 4, 100)


def test_pointing_rate_counts_every_quadrant(
    make_image_folder: Callable[..., Path], tmp_path: Path, images: list[Path]
) -> None:
    data = make_image_folder(tmp_path / "data", classes=2, train=1, val=1)
    model = _tiny()
    model.class_names = ("airplane", "automobile", "bird")  # the demo's first classes
    result = pointing_rate(model, data / "val", per_class=1)
    assert result.trials == 2 and len(result.hits) == 4 and all(0 <= h <= 2 for h in result.hits)
    assert 0.0 <= result.rate <= 1.0 and "chance 25%" in result.format()


def test_cli_writes_overlays_and_names_bad_input(
    images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = save_weights(_tiny(), tmp_path / "tiny.safetensors")
    out = tmp_path / "overlays"
    model = f"inception_v3:{weights}"
    assert main(["explain", *map(str, images), "--model", model, "--class", "ship", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("ship (class 2)") == 2
    assert sorted(p.name.split("_")[2] for p in out.iterdir()) == ["ship", "ship"]
    assert main(["explain", str(images[0]), "--model", model, "--class", "zebra"]) == 2
    assert "error: inception_v3 has no class named 'zebra'" in capsys.readouterr().err
    assert main(["explain", "--model", model]) == 2
    assert "give IMAGE files to explain, or --quadrant-check DATA" in capsys.readouterr().err


@pytest.mark.slow
def test_a_trained_demo_run_points_at_the_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Trains the demo run (minutes on a CPU), then runs the quadrant check on 20 images per class."""
    assert main(["train", "--out-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    result = pointing_rate(str(tmp_path), DEMO_VAL, per_class=20)  # the run folder stands for its model
    print(result.format())
    assert result.rate > 0.4  # chance is 0.25; docs/explain.md has a measured 52%
