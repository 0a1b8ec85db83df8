"""Feature extraction: a network cut to its named intermediate maps (detection and segmentation backbones)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from inceptionnet.models.base import FeatureInfo, InceptionNetwork
from inceptionnet.models.layers import check_input_size


class FeatureExtractor(nn.Module):
    """A network cut to its named intermediate feature maps (torchvision's FX feature extraction)."""

    def __init__(self, model: InceptionNetwork, *, out_indices: Sequence[int] = (0, 1, 2, 3, 4)) -> None:
        super().__init__()
        taps = model.feature_info
        if not out_indices or any(not 0 <= i < len(taps) for i in out_indices):
            raise ValueError(f"out_indices must be a non-empty subset of 0..{len(taps) - 1}, got {tuple(out_indices)}")
        self.feature_info: list[FeatureInfo] = [taps[i] for i in out_indices]
        self.model_name = model.model_name
        self.min_input_size = model.min_input_size
        self.preprocessing = model.preprocessing
        self.weights_name = model.weights_name  # the backbone's weights; a feature extractor has no classes
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
