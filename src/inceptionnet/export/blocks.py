"""The fused Inception blocks: each block of the paper rewritten for inference, with its 1x1 heads merged.

In every block, the 1x1 convolutions that read the block's input (the first layer of several
branches, named by the block's head plan in models/merged.py, the plan training merges by too) become
one wider 1x1 convolution (`MergedHeads`) whose output is split per branch: the
input is read once, and one large matrix multiply replaces three or four small ones. Every other
ConvBN is folded (export/folding.py). The concatenation order of every block is unchanged.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet.export.folding import check_eval, fold, fold_all
from inceptionnet.models.inception_v3 import InceptionV3C
from inceptionnet.models.inception_v4 import InceptionC, Stem
from inceptionnet.models.layers import ConvBN, ResidualUp
from inceptionnet.models.merged import Combine, HeadPlan, split_branch
from inceptionnet.models.residual_blocks import InceptionResNetA, InceptionResNetB, InceptionResNetC


class MergedHeads(nn.Module):
    """Several 1x1 ConvBNs reading one input, as one wide biased 1x1 conv split into per-branch outputs.

    The first `relu_channels` output channels get a ReLU; the ones after them (a pool branch's conv,
    which needs its ReLU after the pool) do not.
    """

    def __init__(self, heads: list[ConvBN], *, pooled: ConvBN | None = None) -> None:
        super().__init__()
        units = [fold(h).conv for h in heads]
        if pooled is not None:
            units.append(fold(pooled).conv)
        first = units[0]
        for u in units:
            if u.kernel_size != (1, 1) or u.stride != (1, 1) or u.in_channels != first.in_channels:
                raise ValueError(f"only 1x1 stride-1 convolutions of one input can be merged, got {u}")
        self.sizes = [u.out_channels for u in units]
        self.relu_channels = sum(self.sizes[: len(heads)])
        self.conv = nn.Conv2d(first.in_channels, sum(self.sizes), 1, bias=True)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([u.weight for u in units], 0))
            self.conv.bias.copy_(torch.cat([u.bias for u in units], 0))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_eval(self)
        y = self.conv(x)
        if self.relu_channels == y.shape[1]:
            F.relu_(y)
        else:
            F.relu_(y.narrow(1, 0, self.relu_channels))
        return list(torch.split(y, self.sizes, dim=1))

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, relu_channels={self.relu_channels}"


def _pool_can_commute(pool_branch: nn.Sequential) -> bool:
    pool = pool_branch[0]
    return isinstance(pool, nn.AvgPool2d) and not pool.count_include_pad


class _PooledBranch(nn.Module):
    """The pool-then-1x1 branch after its conv joined the merged heads: pool the conv's output, then ReLU.

    Exact because the pool averages only real inputs (weights summing to one), so the bias passes through.
    """

    def __init__(self, pool: nn.AvgPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.relu_(self.pool(y))


class FusedBranches(nn.Module):
    """The branches a block's head plan names (models/merged.py), fused; their outputs in the plan's order.

    The heads share one `MergedHeads`, which the pool branch's conv joins where the pool commutes with it;
    every other layer is folded. Output: heads | pooled | others, as the block concatenates them.
    """

    def __init__(self, block: nn.Module, plan: HeadPlan) -> None:
        super().__init__()
        # The plan names the branches by attribute: getattr fetches the block's child of that name.
        split = [split_branch(getattr(block, name)) for name in plan.heads]
        pooled = getattr(block, plan.pooled) if plan.pooled is not None else None
        self.commute = pooled is not None and _pool_can_commute(pooled)
        self.heads = MergedHeads([head for head, _ in split], pooled=pooled[1] if self.commute else None)
        self.tails = nn.ModuleList([nn.Sequential(*[fold_all(m) for m in rest]) for _, rest in split])
        self.pooled: nn.Module | None = None
        if pooled is not None:
            self.pooled = _PooledBranch(pooled[0]) if self.commute else fold_all(pooled)
        self.others = nn.ModuleList([fold_all(getattr(block, name)) for name in plan.others])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        parts = self.heads(x)
        outputs = [tail(p) for tail, p in zip(self.tails, parts, strict=False)]  # parts[-1]: a pooled conv
        if self.pooled is not None:
            outputs.append(self.pooled(parts[-1]) if self.commute else self.pooled(x))
        return outputs + [other(x) for other in self.others]


class FusedConcat(nn.Module):
    """A fused block whose output is its branches concatenated: Inception-A / -B (v4 Figures 4-5, v3's
    Mixed_5x and Mixed_6b-6e) and Reduction-B (v4 Figure 8, Inception-ResNet Figures 12/18, v3 Mixed_7a)."""

    def __init__(self, block: nn.Module, plan: HeadPlan) -> None:
        super().__init__()
        self.branches = FusedBranches(block, plan)
        self.out_channels = block.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.branches(x), 1)


class FusedInceptionC(nn.Module):
    """Fused Inception-C (v4, Figure 6) and v3's Mixed_7b-7c: heads merged, split 1x3 / 3x1 pairs kept.

    Output order: branch0 | branch1_1x3 | branch1_3x1 | branch2_1x3 | branch2_3x1 | branch3 (pool).
    """

    def __init__(self, block: InceptionC | InceptionV3C, plan: HeadPlan) -> None:
        super().__init__()
        self.branches = FusedBranches(block, plan)
        self.branch1_1x3 = fold(block.branch1_1x3)
        self.branch1_3x1 = fold(block.branch1_3x1)
        self.branch2_1x3 = fold(block.branch2_1x3)
        self.branch2_3x1 = fold(block.branch2_3x1)
        self.out_channels = block.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, x2, x3 = self.branches(x)
        pairs = [self.branch1_1x3(x1), self.branch1_3x1(x1), self.branch2_1x3(x2), self.branch2_3x1(x2)]
        return torch.cat([x0, *pairs, x3], 1)


def _folded_up(up: ResidualUp) -> nn.Conv2d:
    """The residual up-projection with its scale folded in: scale * (W z + b) = (scale W) z + scale b."""
    conv = copy.deepcopy(up.conv)
    with torch.no_grad():
        conv.weight.mul_(up.scale)
        conv.bias.mul_(up.scale)
    return conv


class FusedResidual(nn.Module):
    """Fused Inception-ResNet-A/B/C (Figures 10-11, 13, 16-17, 19): out = act(x + up(concat(branches)))."""

    def __init__(self, block: InceptionResNetA | InceptionResNetB | InceptionResNetC, plan: HeadPlan) -> None:
        super().__init__()
        self.branches = FusedBranches(block, plan)
        self.up = _folded_up(block.up)
        self.activate = isinstance(block.act, nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.up(torch.cat(self.branches(x), 1)).add_(x)
        return F.relu_(out) if self.activate else out


class FusedStem(nn.Module):
    """Fused stem of Inception-v4 (Figure 3): Mixed_4a's two 1x1 heads merged, everything else folded."""

    def __init__(self, stem: Stem, plan: HeadPlan) -> None:
        super().__init__()
        self.conv1a, self.conv2a, self.conv2b = fold(stem.conv1a), fold(stem.conv2a), fold(stem.conv2b)
        self.mixed_3a_pool = stem.mixed_3a_pool
        self.mixed_3a_conv = fold(stem.mixed_3a_conv)
        self.mixed_4a = FusedBranches(stem, plan)
        self.mixed_5a_conv = fold(stem.mixed_5a_conv)
        self.mixed_5a_pool = stem.mixed_5a_pool
        self.out_channels = stem.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2b(self.conv2a(self.conv1a(x)))
        x = torch.cat([self.mixed_3a_pool(x), self.mixed_3a_conv(x)], 1)
        x = torch.cat(self.mixed_4a(x), 1)
        return torch.cat([self.mixed_5a_conv(x), self.mixed_5a_pool(x)], 1)


_FUSED: dict[Combine, type[nn.Module]] = {
    "concat": FusedConcat,
    "pairs": FusedInceptionC,
    "residual": FusedResidual,
    "stem": FusedStem,
}


def fused_block(block: nn.Module, plan: HeadPlan) -> nn.Module:
    """The fused replacement of a block that has a head plan (models/merged.py: `plan_of`)."""
    return _FUSED[plan.combine](block, plan)
