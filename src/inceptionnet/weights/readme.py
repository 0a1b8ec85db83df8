"""README.md of a model folder: the model card for people, in the Hugging Face hub's format.

The hub's metadata (the YAML front matter between `---` lines, for its search, widgets and evaluation
results) is written by `huggingface_hub`'s own `ModelCardData`, and the whole file parses back with its
`ModelCard`; then a body made only from what the folder holds (the network's card) and, for a training
run's folder, the data it trained on and the command that trains it. Nothing is claimed that the card or
the run's settings do not say: the metadata names a dataset or a base model only by a hub id (a local
folder is no dataset id), and a license only where the weights it started from have one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from inceptionnet.card import ModelCard as NetworkCard
from inceptionnet.names import markdown
from inceptionnet.weights.hub import hub_model_id
from inceptionnet.weights.tags import WEIGHT_TAGS

LIBRARY = "inceptionnet"
TASK = "image-classification"
HUB_DATA_PREFIX = "hf:"  # `--data hf:ORG/NAME` (data/sources/hf.py): a dataset on the hub
_DATASET_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")  # NAME (the hub's oldest datasets) or ORG/NAME
LOCAL_DATASET_TYPE = "imagefolder"  # model-index's dataset type for data that is no hub dataset
# The validation numbers of a card as the hub's evaluation results: (card key, metric id, name, whether the card
# holds the error, 100 minus the score), all in %. A multi-label run's card also has top-1 / top-5 "errors",
# 100 - mAP and 100 - exact match: its results are those two scores.
_SINGLE_LABEL = (
    ("val_top1_error", "accuracy", "Top-1 accuracy (%)", True),
    ("val_top5_error", "top_5_accuracy", "Top-5 accuracy (%)", True),
    ("val_balanced_accuracy", "balanced_accuracy", "Balanced accuracy (%)", False),
)
_MULTI_LABEL = (
    ("val_map", "mean_average_precision", "mAP (%)", False),
    ("val_exact_match", "exact_match", "Exact match (%)", False),
)
# The front matter's keys in this order (then the hub's model-index)
_KEY_ORDER = ["library_name", "pipeline_tag", "license", "base_model", "datasets", "tags", "metrics", "class_names"]

# One line per network, from docs/architecture.md's table.
NETWORKS = {
    "inception_v4": "Inception-v4 (Figure 9 of the paper), with the released code's branch and kernel orders.",
    "inception_resnet_v2": "Inception-ResNet-v2 as released with the public ImageNet weights.",
    "inception_resnet_v2_paper": "Inception-ResNet-v2 as the paper draws it (Figures 3 and 15-19).",
    "inception_resnet_v1": "Inception-ResNet-v1 (Figures 10-15 of the paper).",
    "inception_v3": "Inception-v3, the paper's baseline, as released.",
}
PAPER = "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning (Szegedy et al., 2016)"


def render_readme(
    card: NetworkCard, *, timm_name: str | None = None, dataset: str | None = None, command: str | None = None
) -> str:
    """The README.md of a model folder describing `card`.

    `timm_name`: timm's name of the network when timm builds the same one (tagged timm-compatible);
    `dataset`: the data the weights were trained on (`hf:ORG/NAME` or a local folder); `command`: the
    command that trained them.
    """
    parts = [_about(card)]
    if command or dataset:
        parts.append(_training(dataset, command))
    if card.metrics:
        parts.append(_metrics(card.metrics))
    parts += [_usage(timm_name), _preprocessing(card)]
    metadata = card_metadata(card, timm_name=timm_name, dataset=dataset)
    front = metadata.to_yaml(original_order=_KEY_ORDER)
    return str(ModelCard(f"---\n{front}\n---\n\n" + "\n".join(parts)))


def card_metadata(card: NetworkCard, *, timm_name: str | None = None, dataset: str | None = None) -> ModelCardData:
    """The hub's metadata of a model folder: library, task, tags, the base model and its license (weights
    started from published ones), the dataset (a hub id only), the evaluation results, the class names."""
    base_model, license_id = base_weights(card.weights_name)
    results = eval_results(card.metrics or {}, dataset)
    return ModelCardData(
        library_name=LIBRARY,
        pipeline_tag=TASK,
        license=license_id,
        base_model=base_model,
        datasets=[dataset_id] if (dataset_id := hub_dataset_id(dataset)) else None,
        tags=[TASK, "inception", card.model_name] + (["timm-compatible"] if timm_name else []),
        metrics=list(dict.fromkeys(r.metric_type for r in results)) or None,
        model_name=card.model_name if results else None,
        eval_results=results or None,
        class_names=list(card.class_names) if card.class_names is not None else None,
    )


def base_weights(weights_name: str | None) -> tuple[str | None, str | None]:
    """The hub id of the published weights `weights_name` names (a catalogue tag, or `hf-hub:ORG/NAME`), and
    their license where the catalogue knows it; (None, None) for a local file or no weights."""
    tag = next((t for t in WEIGHT_TAGS if t.name == weights_name), None)
    if tag is not None:
        return tag.hf_repo, tag.license
    return hub_model_id(weights_name), None


def hub_dataset_id(dataset: str | None) -> str | None:
    """The hub id of `dataset` when it names a hub dataset (`hf:ORG/NAME`); None for a local folder."""
    if dataset is None or not dataset.startswith(HUB_DATA_PREFIX):
        return None
    found = dataset.removeprefix(HUB_DATA_PREFIX)
    return found if _DATASET_ID.match(found) else None


def eval_results(metrics: Mapping[str, Any], dataset: str | None) -> list[EvalResult]:
    """The card's validation numbers as the hub's evaluation results, on `dataset`: its hub id, else a local
    folder by its name alone (type "imagefolder"); none without a dataset (the hub refuses a result without)."""
    if dataset is None:
        return []
    dataset_id = hub_dataset_id(dataset)
    kind = dataset_id or LOCAL_DATASET_TYPE
    name = dataset_id or Path(dataset).resolve().name
    table = _MULTI_LABEL if metrics.get("val_map") is not None else _SINGLE_LABEL
    return [
        EvalResult(
            task_type=TASK,
            task_name="Image Classification",
            dataset_type=kind,
            dataset_name=name,
            metric_type=metric,
            metric_name=label,
            metric_value=round(100 - metrics[key] if error else metrics[key], 4),
        )
        for key, metric, label, error in table
        if metrics.get(key) is not None
    ]


def _about(card: NetworkCard) -> str:
    what = NETWORKS.get(card.model_name, f"The network {card.model_name}.")
    options = ", ".join(f"`{k}={v!r}`" for k, v in sorted(card.options.items())) or "the defaults"
    names = ", ".join(map(markdown, card.class_names)) if card.class_names is not None else "not named"
    mode = "multi-label" if card.label_mode == "multi" else "single-label"
    return (
        f"# {card.model_name}\n\n{what} From {PAPER}.\n\n"
        f"- build options: {options}\n"
        f"- outputs: {card.num_classes} classes ({mode}): {names}\n"
        f"- input: {card.in_chans} channels, any size from {card.min_input_size} px\n"
    )


def _training(dataset: str | None, command: str | None) -> str:
    lines = ["## Training\n"]
    if dataset:
        lines.append(f"Trained on {markdown(dataset)}.\n")
    if command:
        lines.append(f"```\n{command}\n```\n")
    return "\n".join(lines)


def _metrics(metrics: Any) -> str:
    rows = [f"| {k} | {v} |" for k, v in metrics.items()]
    return "## Validation\n\n| metric | value |\n|---|---|\n" + "\n".join(rows) + "\n\nErrors are in %.\n"


def _usage(timm_name: str | None) -> str:
    text = (
        "## Use\n\n```python\nfrom inceptionnet import create_model\n\n"
        'model = create_model(weights="RUN/model")  # this folder\n'
        'model = create_model(weights="hf-hub:ORG/NAME")  # after huggingface-cli upload ORG/NAME RUN/model\n```\n'
    )
    if timm_name:
        text += f"\nFor timm (`{timm_name}`): `inceptionnet export RUN --format timm`.\n"
    return text


def _preprocessing(card: NetworkCard) -> str:
    pre = card.preprocessing
    return (
        "## Preprocessing\n\n"
        f"RGB; the shorter side resized ({pre.interpolation}) to {math.floor(pre.input_size / pre.crop_fraction)} "
        f"px, the central {pre.input_size}x{pre.input_size} crop (crop fraction {pre.crop_fraction:g}), scaled to "
        f"[0, 1] and normalised with mean {list(pre.mean)} and std {list(pre.std)}.\n"
    )
