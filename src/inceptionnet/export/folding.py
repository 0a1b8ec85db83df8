"""BatchNorm folding: the one place where a ConvBN's BatchNorm is folded into its convolution.

In eval mode BN is an affine map per channel, conv(x) * gamma / sqrt(var + eps) + (beta - mean *
gamma / sqrt(var + eps)), so conv -> BN is one convolution with scaled weights and a bias. A folded
unit has no BatchNorm left, so it cannot be trained: it raises a RuntimeError in training mode.
Both the fused inference network and every exported file are built from these folded units.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from inceptionnet.models.layers import ConvBN

_TRAINING_ERROR = (
    "a fused network is inference-only (its BatchNorm layers are folded away); call .eval() on it, "
    "or train the unfused model and fuse it again afterwards"
)


def check_eval(module: nn.Module) -> None:
    """Refuse to run a folded module in training mode: without BN its training would be silently wrong."""
    if module.training:
        raise RuntimeError(_TRAINING_ERROR)


class ConvReLU(nn.Module):
    """A ConvBN with its BatchNorm folded in: biased conv -> ReLU (in place)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_eval(self)
        return F.relu_(self.conv(x))


def fold(unit: ConvBN) -> ConvReLU:
    """Fold the BatchNorm of one ConvBN (eval statistics) into a copy of its convolution."""
    return ConvReLU(fuse_conv_bn_eval(unit.conv.eval(), unit.bn.eval()))


def fold_all(module: nn.Module) -> nn.Module:
    """Replace every ConvBN under `module` (and `module` itself) by its folded ConvReLU, in place."""
    if isinstance(module, ConvBN):
        return fold(module)
    for name, child in module.named_children():
        setattr(module, name, fold_all(child))
    return module


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of `model` with each ConvBN's BatchNorm folded into its convolution.

    The argument is left untouched. Returns the copy and the number of BatchNorms folded.
    """
    folded = copy.deepcopy(model).eval()
    count = sum(isinstance(m, ConvBN) for m in folded.modules())
    with torch.no_grad():
        folded = fold_all(folded)
    return folded.eval(), count
