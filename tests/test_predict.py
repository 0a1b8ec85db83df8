"""`inceptionnet predict`: class names, top-k probabilities, per-file errors, offline failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.data import eval_transform
from inceptionnet.inference.predict import imagenet_classes, predict
from inceptionnet.models import Preprocessing
from inceptionnet.weights import WeightsError, save_weights

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
GOLDEN_RETRIEVER = 207


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small 1000-class Inception-v3 whose classifier strongly prefers class 207, at 107 px."""
    torch.manual_seed(0)
    model = create_model("inception_v3", width=0.25)
    with torch.no_grad():
        model.head.fc.bias[GOLDEN_RETRIEVER] = 50.0
    model.preprocessing = Preprocessing(input_size=107)
    return save_weights(model, tmp_path_factory.mktemp("ckpt") / "tiny_v3.safetensors")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(1)
    pixels = (torch.rand(90, 120, 3, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(root / "noise.png")
    Image.fromarray(pixels[:, ::-1].copy()).save(root / "flipped.jpg", quality=90)
    data = (root / "flipped.jpg").read_bytes()
    (root / "corrupt.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (root / "notes.txt").write_text("not an image\n")
    return {p.stem: p for p in root.iterdir()}


def test_class_table_ships_with_the_package():
    classes = imagenet_classes()
    assert len(classes) == 1000
    synsets = [c.synset for c in classes]
    assert synsets == sorted(synsets) and len(set(synsets)) == 1000
    assert (classes[0].synset, classes[0].name) == ("n01440764", "tench")
    assert classes[GOLDEN_RETRIEVER].name == "golden retriever"
    assert classes[999].name == "toilet tissue"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/imagenet-sample is not available")
def test_class_table_matches_the_imagenet_sample_file_names():
    names = sorted(p.stem.split("_", 1) for p in SHARED.glob("*.JPEG"))
    assert [(c.synset, c.name) for c in imagenet_classes()] == [(s, n.replace("_", " ")) for s, n in names]


def test_predict_returns_top_k_with_the_network_probabilities(checkpoint, images):
    results = predict([images["noise"], images["flipped"]], model="inception_v3", weights=checkpoint, top_k=3)
    model = create_model("inception_v3", weights=checkpoint).eval()
    for result, path in zip(results, [images["noise"], images["flipped"]], strict=True):
        assert result.ok and len(result.top) == 3
        assert result.top[0].index == GOLDEN_RETRIEVER and result.top[0].name == "golden retriever"
        with Image.open(path) as f:
            x = eval_transform(model.preprocessing)(f.convert("RGB"))
        with torch.no_grad():
            probs = model(x[None]).softmax(1)[0]
        values, indices = probs.topk(3)
        assert [t.index for t in result.top] == indices.tolist()
        assert [t.probability for t in result.top] == pytest.approx(values.tolist(), abs=1e-6)


def test_cli_reports_bad_files_and_still_classifies_the_rest(checkpoint, images, tmp_path, capsys):
    missing = tmp_path / "missing.jpg"
    argv = ["predict", str(images["noise"]), str(images["corrupt"]), str(images["notes"]), str(missing)]
    code = main([*argv, "--model", "inception_v3", "--weights", str(checkpoint), "--top-k", "2", "--json"])
    out = capsys.readouterr()
    assert code == 1
    assert "3 of 4 files could not be classified" in out.err
    rows = {Path(r["path"]).name: r for r in json.loads(out.out)}
    assert rows["noise.png"]["error"] is None and len(rows["noise.png"]["top"]) == 2
    assert rows["noise.png"]["top"][0]["synset"] == "n02099601"
    assert "not a readable image" in rows["corrupt.jpg"]["error"]
    assert "not a readable image" in rows["notes.txt"]["error"]
    assert rows["missing.jpg"]["error"] == "no such file"

    code = main(["predict", str(images["flipped"]), "--model", "inception_v3", "--weights", str(checkpoint)])
    out = capsys.readouterr()
    assert code == 0
    assert "golden retriever (n02099601, class 207)" in out.out


def test_predict_without_weights_offline_says_what_to_download(tmp_path, monkeypatch, capsys, images):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("INCEPTIONNET_WEIGHTS_DIR", str(tmp_path / "manual"))
    with pytest.raises(WeightsError, match=r"Download https://huggingface.co/timm/inception_v4.tf_in1k/"):
        predict([images["noise"]])
    assert main(["predict", str(images["noise"])]) == 2
    assert "inception_v4.tf_in1k.safetensors" in capsys.readouterr().err


def test_predict_refuses_a_network_without_imagenet_classes(images):
    with pytest.raises(ValueError, match="has 10 classes"):
        predict([images["noise"]], model=create_model("inception_v3", width=0.25, num_classes=10))
