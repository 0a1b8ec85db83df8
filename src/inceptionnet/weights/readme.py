"""README.md of a model folder: the model card for people, in the Hugging Face hub's format.

YAML front matter (between `---` lines) for the hub's search and widgets, then a body made only from
what the folder holds (the network's card) and, for a training run's folder, the data it trained on
and the command that trains it. Nothing is claimed that the card or the run's settings do not say.
"""

from __future__ import annotations

import json
import math
from typing import Any

from inceptionnet.card import ModelCard
from inceptionnet.names import markdown

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
    card: ModelCard, *, timm_name: str | None = None, dataset: str | None = None, command: str | None = None
) -> str:
    """The README.md of a model folder describing `card`.

    `timm_name`: timm's name of the network when timm builds the same one (tagged timm-compatible);
    `dataset`: the data the weights were trained on; `command`: the command that trained them.
    """
    parts = [_front_matter(card, timm_name=timm_name, dataset=dataset), _about(card)]
    if command or dataset:
        parts.append(_training(dataset, command))
    if card.metrics:
        parts.append(_metrics(card.metrics))
    parts += [_usage(timm_name), _preprocessing(card)]
    return "\n".join(parts)


def _front_matter(card: ModelCard, *, timm_name: str | None, dataset: str | None) -> str:
    tags = ["image-classification", "inception", card.model_name] + (["timm-compatible"] if timm_name else [])
    meta: dict[str, Any] = {"library_name": "inceptionnet", "pipeline_tag": "image-classification", "tags": tags}
    if dataset:
        meta["datasets"] = [dataset.removeprefix("hf:")]
    if card.metrics:
        meta["metrics"] = ["accuracy"]
    if card.class_names is not None:
        meta["class_names"] = list(card.class_names)
    # JSON is YAML's flow style: every value is quoted correctly without a YAML writer.
    lines = [f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in meta.items()]
    return "---\n" + "\n".join(lines) + "\n---\n"


def _about(card: ModelCard) -> str:
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


def _preprocessing(card: ModelCard) -> str:
    pre = card.preprocessing
    return (
        "## Preprocessing\n\n"
        f"RGB; the shorter side resized ({pre.interpolation}) to {math.floor(pre.input_size / pre.crop_fraction)} "
        f"px, the central {pre.input_size}x{pre.input_size} crop (crop fraction {pre.crop_fraction:g}), scaled to "
        f"[0, 1] and normalised with mean {list(pre.mean)} and std {list(pre.std)}.\n"
    )
