"""The public model names: a plain dict from name to builder and default preprocessing."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inceptionnet.models.base import FeatureInfo, InceptionNetwork, Preprocessing
from inceptionnet.models.inception_resnet import IR_V1, IR_V2_PAPER, IR_V2_RELEASED, InceptionResNet
from inceptionnet.models.inception_v3 import InceptionV3
from inceptionnet.models.inception_v4 import InceptionV4
from inceptionnet.models.layers import check_input_size
from inceptionnet.weights import get_weight_tag, load_state_dict_into, preprocessing_from_dict, resolve_weights


@dataclass(frozen=True)
class ModelEntry:
    builder: Callable[..., InceptionNetwork]
    preprocessing: Preprocessing
    description: str


MODELS: dict[str, ModelEntry] = {
    "inception_v3": ModelEntry(
        InceptionV3,
        Preprocessing(),
        "Inception-v3 as released (the paper's baseline)",
    ),
    "inception_v4": ModelEntry(
        InceptionV4,
        Preprocessing(),
        "Inception-v4, Figures 3-9, with the released code's branch orders",
    ),
    "inception_resnet_v1": ModelEntry(
        lambda **kw: InceptionResNet(IR_V1, **kw),
        Preprocessing(),
        "Inception-ResNet-v1, Figures 10-15 (no public weights exist)",
    ),
    "inception_resnet_v2": ModelEntry(
        lambda **kw: InceptionResNet(IR_V2_RELEASED, **kw),
        Preprocessing(crop_fraction=0.8975),
        "Inception-ResNet-v2 as released with the public ImageNet weights",
    ),
    "inception_resnet_v2_paper": ModelEntry(
        lambda **kw: InceptionResNet(IR_V2_PAPER, **kw),
        Preprocessing(),
        "Inception-ResNet-v2 as drawn in the paper, Figures 3 and 15-19",
    ),
}


def list_models() -> list[str]:
    """The model names accepted by `create_model`."""
    return sorted(MODELS)


def get_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return MODELS[name]


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
    preprocessing = entry.preprocessing
    resolved = None
    if pretrained and weights is None:
        weights = get_weight_tag(name).tag
    if weights is not None:
        resolved = resolve_weights(name, weights)  # fails here, before the build, if unavailable
        if resolved.tag is not None:
            options = {**dict(resolved.tag.model_options), **options}
            preprocessing = resolved.tag.preprocessing
        elif resolved.metadata:
            options = {**resolved.metadata["options"], **options}
            if resolved.metadata.get("preprocessing"):
                preprocessing = preprocessing_from_dict(resolved.metadata["preprocessing"])
        elif resolved.published and name == "inception_v3":
            # every published v3 checkpoint is evaluated with padded average pools (see V3 tags)
            options = {"count_include_pad": True, **options}
    model = entry.builder(**options)
    model.preprocessing = preprocessing
    model.build_options = dict(options)  # recorded in checkpoints saved by save_weights
    if resolved is not None:
        load_state_dict_into(model, resolved.state, source=resolved.source)
        model.weights_name = resolved.tag.name if resolved.tag is not None else resolved.source
    if features_only:
        return FeatureExtractor(model, out_indices=out_indices)
    return model


class FeatureExtractor(nn.Module):
    """A network cut to its named intermediate feature maps (torchvision's FX feature extraction)."""

    def __init__(self, model: InceptionNetwork, *, out_indices: Sequence[int] = (0, 1, 2, 3, 4)) -> None:
        super().__init__()
        # Imported here: torchvision's feature extraction pulls in torch.fx tracing machinery.
        from torchvision.models.feature_extraction import create_feature_extractor

        taps = model.feature_info
        if not out_indices or any(not 0 <= i < len(taps) for i in out_indices):
            raise ValueError(f"out_indices must be a non-empty subset of 0..{len(taps) - 1}, got {tuple(out_indices)}")
        self.feature_info: list[FeatureInfo] = [taps[i] for i in out_indices]
        self.model_name = model.model_name
        self.min_input_size = model.min_input_size
        self.body = create_feature_extractor(
            model,
            return_nodes={f.node: f.name for f in self.feature_info},
            tracer_kwargs={"autowrap_functions": [check_input_size]},
            concrete_args={"return_aux": False},
        )

    @property
    def channels(self) -> list[int]:
        return [f.channels for f in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.body(x)
        return [out[f.name] for f in self.feature_info]
