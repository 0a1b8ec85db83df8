"""Inference-only rewrite of a network: BatchNorm folded into the convolutions, sibling 1x1 convs merged.

`fuse_for_inference(model)` returns a fused deep copy (the argument is left untouched) that computes the
same logits as the eval-mode original, within float rounding, with less work per image:

1. every ConvBN (conv -> BN -> ReLU) becomes one biased convolution followed by ReLU (the BN's affine
   map, with its running statistics, is folded into the conv's weights and bias);
2. in every Inception block, the 1x1 convolutions that read the block's input (the first layer of
   several branches) become one wider 1x1 convolution whose output is split per branch, so the input
   is read once and one large matrix multiply replaces three or four small ones;
3. the pool-then-1x1 branch (3x3 average pool, then 1x1 conv) joins that merged conv too: a 1x1 conv
   and an average pool whose weights sum to one (TensorFlow's count_include_pad=False) commute, bias
   included, so the branch pools the conv's few output channels instead of the block's many inputs;
   with count_include_pad=True (Inception-v3's torchvision-style option) the weights at the border
   do not sum to one, and that branch is left as it is;
4. the residual scale of the Inception-ResNet blocks is folded into the up-projection's weights.

The modules keep their names where they survive, the network class and its public API (`forward`,
`forward_features`, `forward_head`, `preprocessing`) stay the same, and the concatenation order of
every block is unchanged. The fused network is for inference only: BatchNorm no longer exists, so it
cannot be trained; its blocks raise a RuntimeError if run in training mode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from inceptionnet.data import eval_transform, read_image
from inceptionnet.devices import dtype_named
from inceptionnet.export.blocks import fused_block
from inceptionnet.export.folding import fold
from inceptionnet.models.layers import ConvBN
from inceptionnet.models.merged import plan_of


def _fuse_module(module: nn.Module) -> nn.Module:
    """The fused replacement of one module, recursing into containers."""
    plan = plan_of(module)
    if plan is not None:
        return fused_block(module, plan)
    if isinstance(module, ConvBN):
        return fold(module)
    for name, child in module.named_children():
        setattr(module, name, _fuse_module(child))
    return module


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A fused, eval-mode deep copy of `model` for inference; `model` itself is not modified.

    Works on every network of `create_model` (and on any module containing their blocks). The copy
    computes the same outputs as `model.eval()` up to float rounding (about 1e-6 relative in fp32),
    keeps `forward`, `forward_features` and `forward_head`, and raises a RuntimeError if it is run in
    training mode. Layout (`channels_last`) and dtype conversions may be applied before or after.
    """
    fused = copy.deepcopy(model).eval()
    with torch.no_grad():
        fused = _fuse_module(fused)
    fused.eval()
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


@dataclass(frozen=True)
class Agreement:
    """How often a low-precision fused network's top-1 class equals the fp32 plain network's."""

    images: int
    top1_agreement: float
    max_rel_logit_diff: float  # max |a - b| / max |a| over all logits


def top1_agreement(
    model: nn.Module,
    images: list[Path],
    *,
    dtype: str = "bf16",
    batch_size: int = 16,
    channels_last: bool = True,
) -> Agreement:
    """Compare `model` in fp32 with its fused copy in `dtype` (weights cast) on real images.

    Without trained weights (none can be downloaded offline) a random network still tests the
    numerics: its argmax flips only where low precision moves logits past each other.
    """
    low_dtype = dtype_named(dtype)
    if not images:
        raise ValueError("no images to compare on; pass a non-empty list of image files")
    transform = eval_transform(model.preprocessing)
    model = model.eval()
    fast = fuse_for_inference(model).to(low_dtype)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    fast = fast.to(memory_format=layout)
    agree, worst = 0, 0.0
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.stack([transform(read_image(p)) for p in images[i : i + batch_size]])
            ref = model(x)
            low = fast(x.to(low_dtype).contiguous(memory_format=layout)).float()
            agree += int((ref.argmax(1) == low.argmax(1)).sum())
            worst = max(worst, ((ref - low).abs().max() / ref.abs().max()).item())
    return Agreement(len(images), agree / len(images), worst)
