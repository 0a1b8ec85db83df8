"""README.md of model folders: the hub's metadata (written and read back by `huggingface_hub`'s ModelCard) and
a body made from the card and the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import EvalResult, ModelCard

from inceptionnet import create_model
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.loop import train
from inceptionnet.training.presets import train_command
from inceptionnet.weights import CONFIG_FILE, save_model_folder
from inceptionnet.weights.readme import card_metadata


def _front_matter(text: str) -> dict:
    """The metadata as the hub's own library parses it (what the hub shows and searches)."""
    return ModelCard(text).data.to_dict()


def test_a_run_writes_a_readme_that_matches_its_config(tmp_path, make_image_folder, make_train_config):
    data = make_image_folder(tmp_path / "data", classes=2, train=4, val=2)
    cfg = make_train_config(data, tmp_path / "run", epochs=1)
    train(cfg)
    folder = tmp_path / "run" / "model"
    text = (folder / "README.md").read_text()
    meta = _front_matter(text)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert (meta["library_name"], meta["pipeline_tag"]) == ("inceptionnet", "image-classification")
    assert {"image-classification", "inception", "inception_v3"} <= set(meta["tags"])
    assert "timm-compatible" not in meta["tags"]  # 1/8 width: timm has no such network
    # a local folder is no hub dataset: not listed as one, and the evaluation names it by its name alone
    assert "datasets" not in meta and str(data) not in text.split("\n---\n")[0]
    assert "base_model" not in meta and "license" not in meta  # trained from scratch
    assert meta["class_names"] == config["class_names"]
    results = ModelCard(text).data.eval_results
    assert {(r.dataset_type, r.dataset_name, r.task_type) for r in results} == {
        ("imagefolder", "data", "image-classification")
    }
    scores = {r.metric_type: r.metric_value for r in results}
    metrics = config["metrics"]
    assert scores == {
        "accuracy": round(100 - metrics["val_top1_error"], 4),
        "top_5_accuracy": round(100 - metrics["val_top5_error"], 4),
        "balanced_accuracy": round(metrics["val_balanced_accuracy"], 4),
    }
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
    assert "metrics" not in meta and "datasets" not in meta and "model-index" not in meta
    assert "timm-compatible" in meta["tags"] and "--format timm" in text
    assert "## Validation" not in text and "## Training" not in text
    assert meta["class_names"] == ["a", "b", "c"]


def test_the_command_names_only_what_differs_from_the_defaults():
    assert train_command(TrainConfig()) == "inceptionnet train"
    assert (
        train_command(TrainConfig(model="inception_v4", epochs=3))
        == "inceptionnet train --model inception_v4 --epochs 3"
    )


FINETUNED = {"epoch": 3, "step": 30, "val_top1_error": 12.5, "val_top5_error": 1.25, "val_balanced_accuracy": 86.0}
MULTI_LABEL = {"epoch": 2, "step": 8, "val_top1_error": 40.0, "val_top5_error": 75.0, "val_map": 60.0}
MULTI_LABEL |= {"val_exact_match": 25.0}
ON_PETS = {"task_type": "image-classification", "task_name": "Image Classification", "dataset_type": "someone/pets"}
ON_PETS |= {"dataset_name": "someone/pets"}  # a hub dataset: its id is its type and its name


@pytest.mark.parametrize(
    ("weights", "base_model", "license_id"),
    [
        ("inception_v3.tf_in1k", "timm/inception_v3.tf_in1k", "apache-2.0"),  # a published tag
        ("inception_v3.tv_in1k", "timm/inception_v3.tv_in1k", "bsd-3-clause"),
        ("hf-hub:someone/cats", "someone/cats", None),  # a model folder on the hub: its license unknown here
        ("/home/me/runs/x/model", None, None),  # a local folder is no base model id
    ],
)
def test_a_fine_tune_names_its_base_model_and_hub_dataset(
    tmp_path: Path, weights: str, base_model: str | None, license_id: str | None
) -> None:
    model = create_model("inception_v3", width=0.125, num_classes=2)
    model.weights_name = weights
    folder = save_model_folder(
        tmp_path / "m", model, class_names=["cat", "dog"], metrics=FINETUNED, dataset="hf:someone/pets"
    )
    card = ModelCard.load(folder / "README.md")  # a local file: read without the network
    written = model.card.replace(class_names=("cat", "dog"), metrics=FINETUNED)
    assert card.data.to_dict() == card_metadata(written, dataset="hf:someone/pets").to_dict()  # fields read back
    assert (card.data.base_model, card.data.license) == (base_model, license_id)
    assert card.data.datasets == ["someone/pets"] and card.data.model_name == "inception_v3"
    assert card.data.eval_results == [
        EvalResult(**ON_PETS, metric_type=metric, metric_value=value, metric_name=name)
        for metric, value, name in (
            ("accuracy", 87.5, "Top-1 accuracy (%)"),
            ("top_5_accuracy", 98.75, "Top-5 accuracy (%)"),
            ("balanced_accuracy", 86.0, "Balanced accuracy (%)"),
        )
    ]
    assert "| val_top1_error | 12.5 |" in card.text and "Trained on hf:someone/pets." in card.text


def test_a_multi_label_card_reports_map_and_exact_match(tmp_path: Path) -> None:
    model = create_model("inception_v3", width=0.125, num_classes=2)
    folder = save_model_folder(tmp_path / "m", model, class_names=["a", "b"], metrics=MULTI_LABEL, dataset="data")
    results = ModelCard.load(folder / "README.md").data.eval_results
    assert [(r.metric_type, r.metric_value) for r in results] == [
        ("mean_average_precision", 60.0),
        ("exact_match", 25.0),
    ]


def test_a_folder_without_its_data_has_numbers_but_no_evaluation_results(tmp_path: Path) -> None:
    """The hub refuses an evaluation result without its dataset: the numbers stay in the body's table."""
    model = create_model("inception_v3", width=0.125, num_classes=2)
    folder = save_model_folder(tmp_path / "m", model, class_names=["a", "b"], metrics=FINETUNED)
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert "| val_balanced_accuracy | 86.0 |" in card.text
