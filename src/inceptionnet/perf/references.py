"""Reference implementations of our networks: timm's equivalents, by name, randomly initialised, and the
ONNX file of one, made with timm's own exporter, for the inference engines to run.

The references of `inceptionnet bench --reference` are timm's network run four ways: eagerly on
PyTorch in timm's default layout (NCHW, "timm") and in channels_last ("timm-channels-last"), and
exported to ONNX and run on ONNX Runtime ("onnxruntime") or OpenVINO ("openvino").
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from inceptionnet.extras import require

REFERENCES = ("timm", "timm-channels-last", "onnxruntime", "openvino")
TORCH_REFERENCES = ("timm", "timm-channels-last")

# Our name -> timm's name for the same network. Inception-ResNet-v1 and the paper's drawing of
# Inception-ResNet-v2 have no timm counterpart.
TIMM_NAMES = {
    "inception_v3": "inception_v3",
    "inception_v4": "inception_v4",
    "inception_resnet_v2": "inception_resnet_v2",
}


def reference_name(model: str, reference: str = "timm") -> str:
    """timm's name for `model`; an error says which references exist and which of ours have a counterpart."""
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; choose from: {', '.join(REFERENCES)} (or none)")
    if model not in TIMM_NAMES:
        raise ValueError(f"timm has no equivalent of {model}; compare one of: {', '.join(sorted(TIMM_NAMES))}")
    return TIMM_NAMES[model]


def build_reference(model: str, *, num_classes: int = 1000) -> nn.Module:
    """timm's randomly initialised counterpart of `model` (timm is a dev dependency, imported here)."""
    name = reference_name(model)
    timm = require("timm", extra=None, purpose="the timm reference")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def export_reference(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """timm's network as ONNX through timm's own exporter (`timm.utils.onnx.onnx_export`, the torch.export-based
    path), eval mode, dynamic batch; the engines fuse BatchNorm themselves when they load it."""
    from timm.utils.onnx import onnx_export

    onnx_export(model.eval(), str(path), example_input=example, use_dynamo=True, check=False)
    return path
