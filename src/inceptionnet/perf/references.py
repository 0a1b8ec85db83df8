"""Reference implementations of our networks: timm's equivalents, by name, randomly initialised."""

from __future__ import annotations

from torch import nn

# Our name -> timm's name for the same network. Inception-ResNet-v1 and the paper's drawing of
# Inception-ResNet-v2 have no timm counterpart.
TIMM_NAMES = {
    "inception_v3": "inception_v3",
    "inception_v4": "inception_v4",
    "inception_resnet_v2": "inception_resnet_v2",
}


def reference_name(model: str, reference: str = "timm") -> str:
    """The reference library's name for `model`; an error says which of ours have a counterpart."""
    if reference != "timm":
        raise ValueError(f"unknown reference {reference!r}; the only reference is 'timm'")
    if model not in TIMM_NAMES:
        raise ValueError(f"timm has no equivalent of {model}; compare one of: {', '.join(sorted(TIMM_NAMES))}")
    return TIMM_NAMES[model]


def build_reference(model: str, *, reference: str = "timm", num_classes: int = 1000) -> nn.Module:
    """timm's randomly initialised counterpart of `model` (timm is a dev dependency, imported here)."""
    name = reference_name(model, reference)
    try:
        import timm
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ValueError("the timm reference needs timm: pip install timm (or the project's dev extra)") from err
    return timm.create_model(name, pretrained=False, num_classes=num_classes)
