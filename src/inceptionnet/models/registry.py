"""The public model names: a plain dict from name to builder and default preprocessing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inceptionnet.models.base import InceptionNetwork, Preprocessing
from inceptionnet.models.inception_resnet import IR_V1, IR_V2_PAPER, IR_V2_RELEASED, InceptionResNet
from inceptionnet.models.inception_v3 import InceptionV3
from inceptionnet.models.inception_v4 import InceptionV4


@dataclass(frozen=True)
class ModelEntry:
    builder: Callable[..., InceptionNetwork]
    preprocessing: Preprocessing
    description: str
    has_aux: bool = True  # whether it can be built with an auxiliary head (aux_logits=True)


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
        has_aux=IR_V1.has_aux,
    ),
    "inception_resnet_v2": ModelEntry(
        lambda **kw: InceptionResNet(IR_V2_RELEASED, **kw),
        Preprocessing(crop_fraction=0.8975),
        "Inception-ResNet-v2 as released with the public ImageNet weights",
        has_aux=IR_V2_RELEASED.has_aux,
    ),
    "inception_resnet_v2_paper": ModelEntry(
        lambda **kw: InceptionResNet(IR_V2_PAPER, **kw),
        Preprocessing(),
        "Inception-ResNet-v2 as drawn in the paper, Figures 3 and 15-19",
        has_aux=IR_V2_PAPER.has_aux,
    ),
}


def list_models() -> list[str]:
    """The model names accepted by `create_model`."""
    return sorted(MODELS)


def get_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return MODELS[name]
