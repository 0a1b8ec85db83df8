"""README.md of model folders: the hub's front matter and a body made from the card and the run."""

from __future__ import annotations

import json

import yaml

from inceptionnet import create_model
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.loop import train
from inceptionnet.training.presets import train_command
from inceptionnet.weights import CONFIG_FILE, save_model_folder


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    head, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(head)


def test_a_run_writes_a_readme_that_matches_its_config(tmp_path, make_image_folder, make_train_config):
    data = make_image_folder(tmp_path / "data", classes=2, train=4, val=2)
    cfg = make_train_config(data, tmp_path / "run", epochs=1)
    train(cfg)
    folder = tmp_path / "run" / "model"
    text = (folder / "README.md").read_text()
    meta = _front_matter(text)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert meta["library_name"] == "inceptionnet"
    assert {"image-classification", "inception", "inception_v3"} <= set(meta["tags"])
    assert "timm-compatible" not in meta["tags"]  # 1/8 width: timm has no such network
    assert meta["datasets"] == [str(data)]
    assert meta["class_names"] == config["class_names"]
    assert "Inception-v3" in text and "# inception_v3" in text
    for name in config["class_names"]:
        assert name in text
    for key in ("val_top1_error", "val_top5_error"):
        assert f"| {key} | {config['metrics'][key]} |" in text
    assert train_command(cfg) in text and "--width 0.125" in text
    assert 'create_model(weights="RUN/model")' in text
    assert create_model(weights=folder).card.class_names == tuple(config["class_names"])


def test_a_plain_network_gets_a_readme_without_metrics(tmp_path):
    model = create_model("inception_v4", num_classes=3)
    folder = save_model_folder(tmp_path / "m", model, class_names=["a", "b", "c"])
    text = (folder / "README.md").read_text()
    meta = _front_matter(text)
    assert "metrics" not in meta and "datasets" not in meta
    assert "timm-compatible" in meta["tags"] and "--format timm" in text
    assert "## Validation" not in text and "## Training" not in text
    assert meta["class_names"] == ["a", "b", "c"]


def test_the_command_names_only_what_differs_from_the_defaults():
    assert train_command(TrainConfig()) == "inceptionnet train"
    assert (
        train_command(TrainConfig(model="inception_v4", epochs=3))
        == "inceptionnet train --model inception_v4 --epochs 3"
    )
