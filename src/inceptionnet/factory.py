"""The one place a name, a weights tag or a weights file becomes a network with its options and weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from inceptionnet.models import FeatureExtractor, Preprocessing, get_entry
from inceptionnet.weights import (
    ResolvedWeights,
    get_weight_tag,
    load_state_dict_into,
    preprocessing_from_dict,
    resolve_weights,
)


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3, 4),
    **options: Any,
) -> nn.Module:
    """Build a network by name, optionally with weights.

    Options: num_classes, in_chans, drop_rate, aux_logits, width and, for the Inception-ResNet
    networks, scales=(a, b, c); inception_v3 also takes count_include_pad.

    `pretrained=True` loads the network's default published ImageNet weights; `weights` names a
    published tag ("tf_in1k", see `inceptionnet.weights.list_weights`) or a local checkpoint file
    (ours, or a published one in timm's layout; .safetensors, or .pth/.pt/.bin read with
    weights_only=True). A tag also sets `model.preprocessing` and the build options its weights
    need (explicit options win); our own checkpoints bring back the options they were saved with.
    A different `num_classes` or `in_chans` gets a fresh classifier or an adapted first convolution.

    With `features_only=True` the result returns the feature maps at strides 2, 4, 8, 16 and 32
    (`out_indices` picks among them) as a list, for use as a detection or segmentation backbone.
    """
    entry = get_entry(name)
    if pretrained and weights is None:
        weights = get_weight_tag(name).tag
    resolved = resolve_weights(name, weights) if weights is not None else None  # fails before the build
    weight_options, preprocessing = _what_the_weights_need(name, resolved)
    model = entry.builder(preprocessing=preprocessing or entry.preprocessing, **{**weight_options, **options})
    if resolved is not None:
        load_state_dict_into(model, resolved.state, source=resolved.source)
        model.weights_name = resolved.tag.name if resolved.tag is not None else resolved.source
    if features_only:
        return FeatureExtractor(model, out_indices=out_indices)
    return model


def _what_the_weights_need(name: str, resolved: ResolvedWeights | None) -> tuple[dict[str, Any], Preprocessing | None]:
    """The build options and preprocessing that weights come with (a tag's, or those our files record)."""
    if resolved is None:
        return {}, None
    if resolved.tag is not None:
        return dict(resolved.tag.model_options), resolved.tag.preprocessing
    if resolved.metadata:
        recorded = resolved.metadata.get("preprocessing")
        return dict(resolved.metadata["options"]), preprocessing_from_dict(recorded) if recorded else None
    if resolved.published and name == "inception_v3":
        # every published v3 checkpoint is evaluated with padded average pools (see the v3 tags)
        return {"count_include_pad": True}, None
    return {}, None


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """`"inception_v4"` -> ("inception_v4", None); `"inception_v4:tag-or-path"` -> ("inception_v4", "tag-or-path")."""
    name, sep, weights = spec.partition(":")
    if sep and not weights:
        raise ValueError(f"model {spec!r} ends with ':' but names no weights; write NAME or NAME:WEIGHTS")
    return name, (weights if sep else None)
