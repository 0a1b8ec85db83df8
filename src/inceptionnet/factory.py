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
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3, 4),
    **options: Any,
) -> nn.Module:
    """Build a network by name, optionally with weights; or the network that weights name.

    Options: num_classes, in_chans, drop_rate, aux_logits, width and, for the Inception-ResNet
    networks, scales=(a, b, c); inception_v3 also takes count_include_pad.

    `pretrained=True` loads the network's default published ImageNet weights. `weights` is a
    published tag ("tf_in1k", see `inceptionnet.weights.list_weights`), a file (ours, a published
    or timm training checkpoint in timm's layout, a plain state dict, one of our training
    checkpoints), a run folder, a model folder, or "hf-hub:ORG/NAME" (docs/weights.md). Weights that
    record their network (all but published files and plain state dicts) make `name` optional; a
    `name` that differs from theirs is an error. The weights bring their build options, preprocessing,
    class count and class names (`model.class_names`); options passed explicitly win, and a different
    `num_classes` gets a fresh classifier (fine-tuning), a different `in_chans` an adapted first convolution.

    With `features_only=True` the result returns the feature maps at strides 2, 4, 8, 16 and 32
    (`out_indices` picks among them) as a list, for use as a detection or segmentation backbone.
    """
    model, _, _ = build_model(name, pretrained=pretrained, weights=weights, options=options)
    if features_only:
        return FeatureExtractor(model, out_indices=out_indices)
    return model


def build_model(
    name: str | None,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    options: dict[str, Any],
) -> tuple[InceptionNetwork, LoadReport | None, ResolvedWeights | None]:
    """`create_model`'s network, with what loading its weights did and the weights themselves (None, None without)."""
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
        return entry.builder(preprocessing=entry.preprocessing, **options), None, None
    build = {**resolved.options, **_class_count(resolved, options), **options}
    model = entry.builder(preprocessing=resolved.preprocessing or entry.preprocessing, **build)
    report = load_state_dict_into(model, resolved.state, source=resolved.source)
    model.weights_name = resolved.tag.name if resolved.tag is not None else resolved.source
    model.class_names = _class_names(model, resolved, report)
    return model, report, resolved


def _class_count(resolved: ResolvedWeights, options: dict[str, Any]) -> dict[str, Any]:
    """The weights' class count, unless the caller chose one: the classifier then loads, never starts random."""
    rows = resolved.num_classes
    if "num_classes" in options or rows is None:
        return {}
    return {"num_classes": 1000 if rows == 1001 else rows}  # TF's background row is dropped on loading


def _class_names(model: InceptionNetwork, resolved: ResolvedWeights, report: LoadReport) -> tuple[str, ...] | None:
    """The name of each output: recorded with the weights, the ImageNet synsets for published weights, else None."""
    if any(k.startswith(_HEAD) for k in report.reinitialised):
        return None  # a fresh classifier: its classes are whatever it will be trained on
    names = resolved.class_names
    if names is not None:
        if len(names) != model.num_classes:
            raise WeightsError(
                f"{resolved.source} records {len(names)} class names for a {resolved.num_classes}-class classifier; "
                "the file is inconsistent: write it again"
            )
        return names
    if resolved.imagenet and model.num_classes == 1000:
        return imagenet_synsets()
    return None


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
