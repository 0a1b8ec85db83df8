"""Training with the sibling 1x1 heads of each Inception block run as one convolution and one BatchNorm.

In every Inception block several branches open with a 1x1 ConvBN that reads the block input
(Inception-A: branch0, and the first layers of branch1 and branch2). `HEAD_PLANS` names them, per
block class, once: training merges them (`merge_heads` below) and inference fuses them
(export/blocks.py) by the same plan. `merge_heads(model)` is a module transform, applied from
outside as `fuse_for_inference` is: each planned block becomes a merged subclass of its figure
class (`block.__class__` is swapped; no module, parameter or buffer is created, moved or renamed, so
the state-dict keys, the optimiser's parameters and the checkpoints stay as they are). While
training, a merged block runs its heads as

    y = conv1x1(x, cat(W_0, W_1, ...))      one convolution, the input read once
    y = batch_norm(y, cat(gamma), cat(beta)) one BatchNorm over the concatenated channels
    y = relu(y); split(y) per branch

This computes what the separate heads compute, up to float rounding: each output channel of a 1x1
convolution is its own dot product over the input channels, and BatchNorm normalises each channel
with that channel's own batch statistics. The concatenated weights are built in the forward pass, so
each head's weight, gamma and beta gets its own slice of the gradient, and the running statistics,
updated on a concatenated copy, are written back to each head's BatchNorm with its
`num_batches_tracked`. The pool-then-1x1 branch runs its conv before its pool (`pooled_head`).

The merged form is taken only where it is exact and cheap to check: in training mode, with every
head a plain `nn.BatchNorm2d` that tracks running statistics with the same momentum and eps
(SyncBatchNorm, frozen or evaluating layers, or a cumulative-average momentum run the heads one by
one). In eval mode a merged block runs its figure class's forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet.models.inception_v3 import InceptionV3A, InceptionV3B, InceptionV3C, ReductionV3B
from inceptionnet.models.inception_v4 import InceptionA, InceptionB, InceptionC, ReductionB, Stem
from inceptionnet.models.layers import ConvBN
from inceptionnet.models.residual_blocks import InceptionResNetA, InceptionResNetB, InceptionResNetC, ReductionResNetB

Combine = Literal["concat", "pairs", "residual", "stem"]


@dataclass(frozen=True)
class HeadPlan:
    """The branches of a block that read one input (the block's; in the stem, Mixed_4a's), by attribute name.

    `heads`: the branches opening with a 1x1 ConvBN, each the ConvBN itself or an nn.Sequential whose
    first layer it is; `pooled`: the 3x3-average-pool-then-1x1 branch; `others`: the branches that read
    the input otherwise (a max pool). The branch outputs come in this order: heads | pooled | others.
    `combine`, how the block's forward joins them: "concat" (one torch.cat), "pairs" (Inception-C: branch1
    and branch2 each feed a 1x3 / 3x1 pair), "residual" (act(x + up(cat))), "stem" (Mixed_4a's cat).
    """

    combine: Combine
    heads: tuple[str, ...]
    pooled: str | None = None
    others: tuple[str, ...] = ()


_FOUR = HeadPlan("concat", heads=("branch0", "branch1", "branch2"), pooled="branch3")  # Inception-A, -B
_PAIRS = HeadPlan("pairs", heads=("branch0", "branch1", "branch2"), pooled="branch3")  # Inception-C
_REDUCTION = HeadPlan("concat", heads=("branch0", "branch1"), others=("branch2",))  # Reduction-B (v4, v3)

HEAD_PLANS: dict[type[nn.Module], HeadPlan] = {
    Stem: HeadPlan("stem", heads=("mixed_4a_branch0", "mixed_4a_branch1")),  # Figure 3, Mixed_4a
    InceptionA: _FOUR,  # Figure 4
    InceptionB: _FOUR,  # Figure 5
    InceptionC: _PAIRS,  # Figure 6
    ReductionB: _REDUCTION,  # Figure 8
    InceptionV3A: _FOUR,  # v3 Figure 5 (Mixed_5b-5d)
    InceptionV3B: _FOUR,  # v3 Figure 6 (Mixed_6b-6e)
    InceptionV3C: _PAIRS,  # v3 Figure 7 (Mixed_7b-7c)
    ReductionV3B: _REDUCTION,  # Mixed_7a
    InceptionResNetA: HeadPlan("residual", heads=("branch0", "branch1", "branch2")),  # Figures 10, 16
    InceptionResNetB: HeadPlan("residual", heads=("branch0", "branch1")),  # Figures 11, 17
    InceptionResNetC: HeadPlan("residual", heads=("branch0", "branch1")),  # Figures 13, 19
    ReductionResNetB: HeadPlan("concat", heads=("branch0", "branch1", "branch2"), others=("branch3",)),  # Fig. 12, 18
}


def split_branch(branch: nn.Module) -> tuple[ConvBN, list[nn.Module]]:
    """A head branch as its leading 1x1 ConvBN and the layers after it (none when the branch is the ConvBN)."""
    if isinstance(branch, ConvBN):
        return branch, []
    head, *rest = branch
    return head, rest


def figure_class(module: nn.Module) -> type[nn.Module]:
    """The class `module` was built as: its figure class when `merge_heads` swapped it for a merged one."""
    return getattr(type(module), "figure_class", type(module))


def plan_of(block: nn.Module) -> HeadPlan | None:
    """The head plan of `block`'s figure class (merged or not); None for a module without one."""
    return HEAD_PLANS.get(figure_class(block))


class _Merged:
    """What every merged block adds to its figure class: its plan and the merged branch outputs."""

    figure_class: type[nn.Module]
    plan: HeadPlan

    def merged_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the planned branches on `x` (heads | pooled | others), the heads merged."""
        # The plan names the branches by attribute: getattr fetches this block's child of that name.
        split = [split_branch(getattr(self, name)) for name in self.plan.heads]
        outputs = []
        for (_, rest), y in zip(split, merged_heads(x, [head for head, _ in split]), strict=True):
            for layer in rest:
                y = layer(y)
            outputs.append(y)
        if self.plan.pooled is not None:
            outputs.append(pooled_head(x, getattr(self, self.plan.pooled)))
        return outputs + [getattr(self, name)(x) for name in self.plan.others]


class _MergedConcat(_Merged):
    """Blocks whose output is their branches concatenated (Inception-A, -B, the reductions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        return torch.cat(self.merged_branches(x), 1)


class _MergedSplitPairs(_Merged):
    """Inception-C (v4 Figure 6, v3 Figure 7): branch1 and branch2 each feed a 1x3 / 3x1 pair."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        x0, x1, x2, x3 = self.merged_branches(x)
        pairs = [self.branch1_1x3(x1), self.branch1_3x1(x1), self.branch2_1x3(x2), self.branch2_3x1(x2)]
        return torch.cat([x0, *pairs, x3], 1)


class _MergedResidual(_Merged):
    """Inception-ResNet-A, -B, -C: act(x + up(concatenated branches))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        return self.act(x + self.up(torch.cat(self.merged_branches(x), 1)))


class _MergedStem(_Merged):
    """The Inception-v4 stem (Figure 3) with Mixed_4a's two 1x1 heads merged."""

    def mixed_4a(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().mixed_4a(x)
        return torch.cat(self.merged_branches(x), 1)


_KINDS: dict[Combine, type[_Merged]] = {
    "concat": _MergedConcat,
    "pairs": _MergedSplitPairs,
    "residual": _MergedResidual,
    "stem": _MergedStem,
}


def _merged_class(figure: type[nn.Module]) -> type[nn.Module]:
    """The merged subclass of a figure class: its plan's merged forward first in the method order."""
    plan = HEAD_PLANS[figure]
    attrs: dict[str, Any] = {
        "figure_class": figure,
        "plan": plan,
        "__module__": __name__,
        "__qualname__": f"Merged{figure.__name__}",
        "__doc__": f"{figure.__name__} trained with its sibling 1x1 heads merged (models/merged.py).",
    }
    return type(f"Merged{figure.__name__}", (_KINDS[plan.combine], figure), attrs)


_MERGED: dict[type[nn.Module], type[nn.Module]] = {cls: _merged_class(cls) for cls in HEAD_PLANS}
# Each merged class is also a module attribute under its own name, so that a merged network pickles
# (`torch.save(model)`) and unpickles as a plain one does.
globals().update({merged.__name__: merged for merged in _MERGED.values()})


def merge_heads(model: nn.Module, enable: bool = True) -> nn.Module:
    """Train every planned block of `model` with its sibling 1x1 heads merged; in place, returns `model`.

    Same results up to float rounding, about 1.03-1.04x faster training steps (docs/performance.md);
    same modules, parameters, buffers and state-dict keys. Apply it before wrapping the network (DDP,
    torch.compile) or copying it (a weight average). `merge_heads(model, False)` restores the figure
    classes (for tracing with the plain forwards, or comparing against them).
    """
    for module in model.modules():
        plain = figure_class(module)
        if plain in _MERGED:
            module.__class__ = _MERGED[plain] if enable else plain
    return model


def merged_heads(x: torch.Tensor, heads: Sequence[ConvBN]) -> list[torch.Tensor]:
    """The outputs of the 1x1 ConvBN `heads` on `x`, computed as one conv, one BatchNorm and one ReLU.

    Falls back to running the heads one by one where merging would not be exact (see the module
    docstring); the result is the same either way.
    """
    if not _mergeable(heads):
        return [head(x) for head in heads]
    bns = [head.bn for head in heads]
    for bn in bns:
        bn.num_batches_tracked.add_(1)
    running_mean = torch.cat([bn.running_mean for bn in bns])
    running_var = torch.cat([bn.running_var for bn in bns])
    y = F.conv2d(x, torch.cat([head.conv.weight for head in heads]))
    y = F.batch_norm(
        y,
        running_mean,
        running_var,
        torch.cat([bn.weight for bn in bns]),
        torch.cat([bn.bias for bn in bns]),
        training=True,
        momentum=bns[0].momentum,
        eps=bns[0].eps,
    )
    sizes = [bn.num_features for bn in bns]
    with torch.no_grad():  # the updated statistics back into each head's buffers
        for bn, mean, var in zip(bns, running_mean.split(sizes), running_var.split(sizes), strict=True):
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
    return list(F.relu_(y).split(sizes, dim=1))


def pooled_head(x: torch.Tensor, branch: nn.Sequential) -> torch.Tensor:
    """The pool-then-1x1 branch (3x3 average pool, 1x1 ConvBN) with the pool moved after the convolution.

    Exact: a 1x1 convolution without bias is a per-pixel linear map, so it commutes with any average
    pool (zero padding included or not); the pool then runs on the conv's few output channels instead
    of the block's many input channels. BatchNorm and ReLU come after the pool, as before.
    """
    pool, head = branch
    return head.act(head.bn(pool(head.conv(x))))


def _mergeable(heads: Sequence[ConvBN]) -> bool:
    """Whether merging `heads` is exact: plain 1x1 convs, plain training BatchNorms with equal settings."""
    first = heads[0].bn
    for head in heads:
        conv, bn = head.conv, head.bn
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.padding != (0, 0) or conv.groups != 1:
            return False
        if conv.dilation != (1, 1) or conv.bias is not None or conv.padding_mode != "zeros":
            return False
        if type(bn) is not nn.BatchNorm2d or not (bn.training and bn.track_running_stats and bn.affine):
            return False
        if bn.momentum is None or bn.momentum != first.momentum or bn.eps != first.eps:
            return False
    return True
