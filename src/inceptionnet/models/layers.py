"""Building blocks shared by every network: the conv unit, pooling, heads, residual scaling.

Conventions (paper-spec section 1):
- every "traditional" convolution is conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU;
- "same" padding at stride 1 is symmetric, (k - 1) // 2 per side; "V" (valid) means no padding;
- average pools inside blocks are 3x3/1 "same" and exclude the padded positions (as TensorFlow does);
- the residual up-projection is a 1x1 convolution with bias, no BN and no activation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

BN_EPS = 1e-3


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (1.0 = the paper); never below 1."""
    return max(1, round(channels * width))


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU: the paper's "traditional" layer."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int = 1,
        valid: bool = False,
    ) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        padding = (0, 0) if valid else ((kh - 1) // 2, (kw - 1) // 2)
        if not valid and stride != 1:
            # TF "same" padding at stride 2 is asymmetric; no network here uses it.
            raise ValueError("same-padded convolutions are only used at stride 1")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw), stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class StemStart(nn.Module):
    """The three convolutions every stem opens with (Figures 3 and 14, v3's Conv2d_1a-2b): 299x299x3 -> 147x147x64.

    The stems build on it (`start(x)`), so these layers, and their state-dict keys, are written once.
    """

    def __init__(self, in_chans: int, *, width: float = 1.0) -> None:
        super().__init__()
        self.conv1a = ConvBN(in_chans, scaled(32, width), 3, stride=2, valid=True)  # 149x149x32
        self.conv2a = ConvBN(scaled(32, width), scaled(32, width), 3, valid=True)  # 147x147x32
        self.conv2b = ConvBN(scaled(32, width), scaled(64, width), 3)  # 147x147x64

    def start(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2b(self.conv2a(self.conv1a(x)))


def max_pool_3x3_s2() -> nn.MaxPool2d:
    """3x3 max pool, stride 2, valid: every grid reduction of the paper."""
    return nn.MaxPool2d(3, stride=2)


def avg_pool_3x3_same() -> nn.AvgPool2d:
    """3x3/1 same average pool that, like TensorFlow, averages only the real (unpadded) inputs."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class BlockStage(nn.Sequential):
    """A stack of repeated Inception blocks ("4 x Inception-A"), with optional activation checkpointing.

    With `grad_checkpointing` set (by the network's `set_grad_checkpointing`), training keeps only each
    block's input during the forward pass and recomputes the block's activations during the backward
    pass (torch.utils.checkpoint, non-reentrant): about one block's activations per stage instead of
    all of them, for one extra forward pass of the blocks. The recomputation leaves the BatchNorm
    running statistics alone, so they move once per step, as without checkpointing. In eval mode or
    without grad the stage is a plain Sequential. State-dict keys are those of an nn.Sequential.
    """

    grad_checkpointing: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.grad_checkpointing and self.training and torch.is_grad_enabled()):
            return super().forward(x)
        for block in self:
            x = checkpoint(
                block,
                x,
                use_reentrant=False,
                context_fn=lambda block=block: (contextlib.nullcontext(), _frozen_bn_stats(block)),
            )
        return x


@contextlib.contextmanager
def _frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Run a recomputation without changing BN running statistics: they are put back as they were after it.

    (Setting the momentum to 0 instead would change which path a block with merged heads takes: models/merged.py.)
    """
    buffers = [
        b
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for b in (m.running_mean, m.running_var, m.num_batches_tracked)
        if b is not None
    ]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved, strict=True):
                buffer.copy_(value)


class ResidualUp(nn.Module):
    """The 1x1 linear "filter-expansion" convolution (bias, no BN, no activation), times the scale.

    out = ReLU(x + scale * up(branches)) is computed by the block; this module owns `up` and `scale`.
    """

    def __init__(self, in_channels: int, out_channels: int, *, scale: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out if self.scale == 1.0 else out * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class ClassifierHead(nn.Module):
    """Figures 9 and 15, top: average pooling -> dropout (keep 0.8) -> fully connected logits.

    The pool is global, so any input size works (at 299 it is the figures' 8x8 valid pool).
    `num_classes=0` leaves the pooled features unclassified.
    """

    def __init__(self, in_channels: int, num_classes: int, *, drop_rate: float) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Linear(in_channels, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class AuxHead(nn.Module):
    """Auxiliary classifier of the released code (Inception-v3 paper; TF-slim v3, v4 and IR-v2).

    avg 5x5/3 V -> 1x1 conv 128 -> 5x5 V conv 768 -> FC. At 299 the 17x17 grid pools to 5x5 and
    the 5x5 conv reduces it to 1x1. Below 299 the grid is smaller than 17x17; it is then pooled
    adaptively to 5x5 so the head works at every input size the network accepts (a documented
    extension: the released code fails there). Used by training only.
    """

    def __init__(self, in_channels: int, num_classes: int, *, width: float = 1.0) -> None:
        super().__init__()
        self.conv0 = ConvBN(in_channels, scaled(128, width), 1)
        self.conv1 = ConvBN(scaled(128, width), scaled(768, width), 5, valid=True)
        self.fc = nn.Linear(scaled(768, width), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] >= 17 and x.shape[-2] >= 17:
            x = F.avg_pool2d(x, 5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, 5)
        x = self.conv1(self.conv0(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def check_input_size(x: torch.Tensor, min_size: int, in_chans: int, model_name: str) -> torch.Tensor:
    """Reject inputs the network cannot take, with the fix, before any convolution runs.

    The minimum is the smallest size that the valid-padded reductions still shrink to 1x1.
    """
    if x.dim() != 4:
        raise ValueError(f"{model_name} expects a batch of images shaped (N, C, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2], x.shape[-1]
    if h < min_size or w < min_size:
        raise ValueError(
            f"input {h}x{w} is smaller than the {min_size}x{min_size} minimum of {model_name}; "
            f"resize or pad the images to at least {min_size}x{min_size} (the default is 299x299)"
        )
    if x.shape[1] != in_chans:
        raise ValueError(
            f"{model_name} was built for {in_chans}-channel input, got {x.shape[1]} channels; "
            f"build it with in_chans={x.shape[1]} or convert the images"
        )
    return x
