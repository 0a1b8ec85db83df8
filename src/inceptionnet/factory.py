"""The one place a name, weights, a run or a model folder becomes a network with its options, classes and weights.

`create_model` builds a network; `load_model` builds the network a command names (`--model`, the
grammar of `parse_model_spec`, docs/weights.md "Naming a model") for inference, where a classifier
that the weights did not fill is an error rather than a random head.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from inceptionnet.card import ModelCard
from inceptionnet.data import imagenet_synsets
from inceptionnet.models import MODELS, FeatureExtractor, InceptionNetwork, get_entry, list_models
from inceptionnet.weights import (
    HUB_PREFIX,
    LoadReport,
    ResolvedWeights,
    WeightsError,
    get_weight_tag,
    is_local_path,
    load_state_dict_into,
    resolve_weights,
)

_HEAD = "head.fc."


def create_model(
    name: str | None = None,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    card: ModelCard | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3, 4),
    **options: Any,
) -> nn.Module:
    """Build a network by name, optionally with weights; or the network that weights or a card describe.

    Options: num_classes, in_chans, drop_rate, aux_logits, width and, for the Inception-ResNet
    networks, scales=(a, b, c); inception_v3 also takes count_include_pad.

    `pretrained=True` loads the network's default published ImageNet weights. `weights` is a
    published tag ("tf_in1k", see `inceptionnet.weights.list_weights`), a file (ours, a published
    or timm training checkpoint in timm's layout, a plain state dict, one of our training
    checkpoints), a run folder, a model folder, or "hf-hub:ORG/NAME" (docs/weights.md). Weights that
    record their network (all but published files and plain state dicts) make `name` optional; a
    `name` that differs from theirs is an error. The weights bring their card: build options,
    preprocessing, class count and class names (`model.class_names`), label mode, thresholds and
    metrics; options passed explicitly win, and a different `num_classes` gets a fresh classifier
    (fine-tuning, without the old classifier's names, thresholds and metrics), a different `in_chans`
    an adapted first convolution.

    `card` (an `inceptionnet.ModelCard`, e.g. `other.card`) builds the network it describes: its name
    and build options, with its class names, preprocessing, label mode, thresholds, metrics and
    weights name; it wins over what `weights` bring. The weights themselves come from `weights` (or
    `pretrained`) only: without them the network is randomly initialised, whatever its card's
    `weights_name` says.

    With `features_only=True` the result returns the feature maps at strides 2, 4, 8, 16 and 32
    (`out_indices` picks among them) as a list, for use as a detection or segmentation backbone.
    """
    model, _, _ = build_model(name, pretrained=pretrained, weights=weights, card=card, options=options)
    if features_only:
        return FeatureExtractor(model, out_indices=out_indices)
    return model


def build_model(
    name: str | None,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    card: ModelCard | None = None,
    options: dict[str, Any],
) -> tuple[InceptionNetwork, LoadReport | None, ResolvedWeights | None]:
    """`create_model`'s network, with what loading its weights did and the weights themselves (None, None without)."""
    if card is not None:
        if name is not None and name != card.model_name:
            raise ValueError(f"the card describes {card.model_name}, not {name}; leave the name out or change the card")
        build = {**card.options, "num_classes": card.num_classes, "in_chans": card.in_chans}
        name, options = card.model_name, {**build, **options}
    if pretrained and weights is None:
        if name is None:
            raise ValueError("pretrained=True needs a network name: create_model(NAME, pretrained=True)")
        weights = get_weight_tag(name).tag
    if name is None and weights is None:
        raise ValueError(
            f"name a network ({', '.join(list_models())}) or pass weights that name theirs: a run folder, "
            "a model folder, a training checkpoint, one of our .safetensors files or hf-hub:ORG/NAME"
        )
    resolved = resolve_weights(name, weights) if weights is not None else None  # fails before the build
    name = resolved.model_name if resolved is not None and resolved.model_name else name
    entry = get_entry(name)
    if resolved is None:
        model = entry.builder(preprocessing=entry.preprocessing, **options)
        if card is not None:  # no weights loaded: none named, and no numbers measured with other weights
            model.apply_card(_fitted_card(model, card, fresh_classifier=False).replace(weights_name=None, metrics=None))
        return model, None, None
    build = {**resolved.options, **_class_count(resolved, options), **options}
    model = entry.builder(preprocessing=entry.preprocessing, **build)
    report = load_state_dict_into(model, resolved.state, source=resolved.source)
    model.apply_card(_loaded_card(model, card, resolved, report))
    return model, report, resolved


def _class_count(resolved: ResolvedWeights, options: dict[str, Any]) -> dict[str, Any]:
    """The weights' class count, unless the caller chose one: the classifier then loads, never starts random."""
    rows = resolved.num_classes
    if "num_classes" in options or rows is None:
        return {}
    return {"num_classes": 1000 if rows == 1001 else rows}  # TF's background row is dropped on loading


def _fitted_card(model: InceptionNetwork, described: ModelCard | None, *, fresh_classifier: bool) -> ModelCard:
    """`model`'s card with what `described` says of its use; the classifier's class names, thresholds and
    metrics only where the classifier is the one described (not a fresh one, nor another class count)."""
    if described is None:
        return model.card
    fields: dict[str, Any] = {
        "preprocessing": described.preprocessing,
        "label_mode": described.label_mode,
        "weights_name": described.weights_name,
    }
    if not fresh_classifier and described.num_classes == model.num_classes:
        fields.update(class_names=described.class_names, thresholds=described.thresholds, metrics=described.metrics)
        fields.update(temperature=described.temperature, unknown=described.unknown)
    return model.card.replace(**fields)


def _loaded_card(
    model: InceptionNetwork, card: ModelCard | None, resolved: ResolvedWeights, report: LoadReport
) -> ModelCard:
    """The card of a network built for weights: the card given, else the weights' own, fitted to the network.

    Weights without a card bring their tag's preprocessing; a published 1000-way classifier's outputs are
    the ImageNet synsets. The weights name is the weights loaded (a tag, a path, a hub address).
    """
    fresh = any(k.startswith(_HEAD) for k in report.reinitialised)
    fitted = _fitted_card(model, card or resolved.card, fresh_classifier=fresh)
    fields: dict[str, Any] = {"weights_name": resolved.tag.name if resolved.tag is not None else resolved.source}
    if card is None and resolved.card is None:
        fields["preprocessing"] = resolved.preprocessing or model.preprocessing
        if not fresh and resolved.imagenet and model.num_classes == 1000:
            fields["class_names"] = imagenet_synsets()
    return fitted.replace(**fields)


def load_model(
    spec: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
    **options: Any,
) -> InceptionNetwork:
    """The network that a command's `--model SPEC` names (`parse_model_spec`), ready for inference.

    `weights` is the separate `--weights` of predict and export; naming weights both ways is an error.
    `pretrained=True` loads the default published weights when neither names any. Unlike
    `create_model`, weights whose classifier does not fit the network asked for (another number of
    classes) are an error that names the file, what it holds and what was asked: the classifier
    would otherwise be random. Without any weights the network is randomly initialised.
    """
    name, spec_weights = parse_model_spec(spec)
    if weights is not None and spec_weights is not None:
        raise ValueError(f"--model {spec} already names weights; drop --weights {weights} (or the weights in --model)")
    weights = spec_weights if weights is None else weights
    model, report, resolved = build_model(name, pretrained=pretrained, weights=weights, options=options)
    if report is not None and resolved is not None:
        _require_classifier(model, report, resolved)
    return model


def _require_classifier(model: InceptionNetwork, report: LoadReport, resolved: ResolvedWeights) -> None:
    """Refuse a network whose classifier stayed at its random initialisation."""
    if not any(k.startswith(_HEAD) for k in report.reinitialised):
        return
    rows = resolved.num_classes
    held = (
        f"a {rows}-class {model.model_name} classifier" if rows else f"{model.model_name} weights without a classifier"
    )
    raise WeightsError(
        f"{resolved.source} holds {held}, but the network asked for has {model.num_classes} classes: its classifier "
        "would be random, not loaded. Leave out the class count (the weights bring theirs), or train a classifier "
        "for these classes first (inceptionnet train --weights ...)"
    )


def parse_model_spec(spec: str) -> tuple[str | None, str | None]:
    """Split a model specification into (network name or None, weights or None).

    - `NAME` -> (NAME, None); `NAME:WEIGHTS` -> (NAME, WEIGHTS), WEIGHTS being a tag, a path or a hub address;
    - `NAME.TAG` (timm's name of a published checkpoint, "inception_v4.tf_in1k") -> (NAME, TAG);
    - a path (run folder, model folder, weights file) or `hf-hub:ORG/NAME` -> (None, spec): the weights name
      their network.
    """
    if spec.startswith(HUB_PREFIX):
        return None, spec
    head, colon, tail = spec.partition(":")
    if colon and head in MODELS:
        if not tail:
            raise ValueError(f"model {spec!r} ends with ':' but names no weights; write NAME or NAME:WEIGHTS")
        return head, tail
    if spec in MODELS:
        return spec, None
    if is_local_path(spec):
        return None, spec
    head, dot, tail = spec.partition(".")
    if dot and head in MODELS:
        return head, tail
    raise ValueError(
        f"unknown model {spec!r}: name a network ({', '.join(list_models())}), NAME:WEIGHTS, "
        "a run folder, a model folder, a weights file or hf-hub:ORG/NAME"
    )
