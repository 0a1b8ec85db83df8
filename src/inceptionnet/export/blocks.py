"""The fused Inception blocks: each block of the paper rewritten for inference, with its 1x1 heads merged.

In every block, the 1x1 convolutions that read the block's input (the first layer of several
branches) become one wider 1x1 convolution (`MergedHeads`) whose output is split per branch: the
input is read once, and one large matrix multiply replaces three or four small ones. Every other
ConvBN is folded (inference.folding). The concatenation order of every block is unchanged.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet.export.folding import check_eval, fold, fold_all
from inceptionnet.models.inception_v3 import InceptionV3A, InceptionV3B, InceptionV3C, ReductionV3B
from inceptionnet.models.inception_v4 import InceptionA, InceptionB, InceptionC, ReductionB, Stem
from inceptionnet.models.layers import ConvBN, ResidualUp
from inceptionnet.models.residual_blocks import (
    InceptionResNetA,
    InceptionResNetB,
    InceptionResNetC,
    ReductionResNetB,
)


def _tail(seq: nn.Sequential) -> nn.Module:
    """The layers of a branch after its leading 1x1 conv, folded (Identity if there are none)."""
    rest = list(seq)[1:]
    return nn.Sequential(*[fold_all(m) for m in rest]) if rest else nn.Identity()


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


class FusedFourBranch(nn.Module):
    """Fused Inception-A / Inception-B (v4, Figures 4-5) and v3's Mixed_5x / Mixed_6b-6e blocks.

    Output order: branch0 | branch1 | branch2 | branch3 (pool), as in the original blocks.
    """

    def __init__(self, block: InceptionA | InceptionB | InceptionV3A | InceptionV3B) -> None:
        super().__init__()
        self.commute = _pool_can_commute(block.branch3)
        heads = [block.branch0, block.branch1[0], block.branch2[0]]
        self.heads = MergedHeads(heads, pooled=block.branch3[1] if self.commute else None)
        self.branch1 = _tail(block.branch1)
        self.branch2 = _tail(block.branch2)
        self.branch3 = _PooledBranch(block.branch3[0]) if self.commute else fold_all(block.branch3)
        self.out_channels = block.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.heads(x)
        b3 = self.branch3(parts[3]) if self.commute else self.branch3(x)
        return torch.cat([parts[0], self.branch1(parts[1]), self.branch2(parts[2]), b3], 1)


class FusedInceptionC(nn.Module):
    """Fused Inception-C (v4, Figure 6) and v3's Mixed_7b-7c: heads merged, split 1x3 / 3x1 pairs kept.

    Output order: branch0 | branch1_1x3 | branch1_3x1 | branch2_1x3 | branch2_3x1 | branch3 (pool).
    """

    def __init__(self, block: InceptionC | InceptionV3C) -> None:
        super().__init__()
        self.commute = _pool_can_commute(block.branch3)
        heads = [block.branch0, block.branch1, block.branch2[0]]
        self.heads = MergedHeads(heads, pooled=block.branch3[1] if self.commute else None)
        self.branch1_1x3 = fold(block.branch1_1x3)
        self.branch1_3x1 = fold(block.branch1_3x1)
        self.branch2 = _tail(block.branch2)
        self.branch2_1x3 = fold(block.branch2_1x3)
        self.branch2_3x1 = fold(block.branch2_3x1)
        self.branch3 = _PooledBranch(block.branch3[0]) if self.commute else fold_all(block.branch3)
        self.out_channels = block.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.heads(x)
        x1 = parts[1]
        x2 = self.branch2(parts[2])
        b3 = self.branch3(parts[3]) if self.commute else self.branch3(x)
        return torch.cat(
            [
                parts[0],
                self.branch1_1x3(x1),
                self.branch1_3x1(x1),
                self.branch2_1x3(x2),
                self.branch2_3x1(x2),
                b3,
            ],
            1,
        )


class FusedReduction(nn.Module):
    """Fused Reduction-B (v4 Figure 8, Inception-ResNet Figures 12/18, v3 Mixed_7a).

    The branches that open with a 1x1 conv share one merged conv; the max pool branch comes last,
    as in every one of these blocks.
    """

    def __init__(self, block: ReductionB | ReductionV3B | ReductionResNetB) -> None:
        super().__init__()
        convs = [b for b in (block.branch0, block.branch1, getattr(block, "branch2", None)) if _opens_1x1(b)]
        self.heads = MergedHeads([b[0] for b in convs])
        self.tails = nn.ModuleList([_tail(b) for b in convs])
        self.pool = block.branch3 if isinstance(block, ReductionResNetB) else block.branch2
        self.out_channels = block.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.heads(x)
        return torch.cat([tail(p) for tail, p in zip(self.tails, parts, strict=True)] + [self.pool(x)], 1)


def _opens_1x1(branch: nn.Module | None) -> bool:
    return isinstance(branch, nn.Sequential) and isinstance(branch[0], ConvBN) and branch[0].conv.kernel_size == (1, 1)


def _folded_up(up: ResidualUp) -> nn.Conv2d:
    """The residual up-projection with its scale folded in: scale * (W z + b) = (scale W) z + scale b."""
    conv = copy.deepcopy(up.conv)
    with torch.no_grad():
        conv.weight.mul_(up.scale)
        conv.bias.mul_(up.scale)
    return conv


class FusedResidual(nn.Module):
    """Fused Inception-ResNet-A/B/C (Figures 10-11, 13, 16-17, 19): out = act(x + up(concat(branches))).

    Output order of the concatenation: branch0 | branch1 [| branch2 for the A block].
    """

    def __init__(self, block: InceptionResNetA | InceptionResNetB | InceptionResNetC) -> None:
        super().__init__()
        branches = [block.branch1] + ([block.branch2] if isinstance(block, InceptionResNetA) else [])
        self.heads = MergedHeads([block.branch0] + [b[0] for b in branches])
        self.tails = nn.ModuleList([nn.Identity()] + [_tail(b) for b in branches])
        self.up = _folded_up(block.up)
        self.activate = isinstance(block.act, nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.heads(x)
        mixed = torch.cat([tail(p) for tail, p in zip(self.tails, parts, strict=True)], 1)
        out = self.up(mixed).add_(x)
        return F.relu_(out) if self.activate else out


class FusedStem(nn.Module):
    """Fused stem of Inception-v4 (Figure 3): Mixed_4a's two 1x1 heads merged, everything else folded."""

    def __init__(self, stem: Stem) -> None:
        super().__init__()
        self.conv1a, self.conv2a, self.conv2b = fold(stem.conv1a), fold(stem.conv2a), fold(stem.conv2b)
        self.mixed_3a_pool = stem.mixed_3a_pool
        self.mixed_3a_conv = fold(stem.mixed_3a_conv)
        self.mixed_4a_heads = MergedHeads([stem.mixed_4a_branch0[0], stem.mixed_4a_branch1[0]])
        self.mixed_4a_branch0 = _tail(stem.mixed_4a_branch0)
        self.mixed_4a_branch1 = _tail(stem.mixed_4a_branch1)
        self.mixed_5a_conv = fold(stem.mixed_5a_conv)
        self.mixed_5a_pool = stem.mixed_5a_pool
        self.out_channels = stem.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2b(self.conv2a(self.conv1a(x)))
        x = torch.cat([self.mixed_3a_pool(x), self.mixed_3a_conv(x)], 1)
        h0, h1 = self.mixed_4a_heads(x)
        x = torch.cat([self.mixed_4a_branch0(h0), self.mixed_4a_branch1(h1)], 1)
        return torch.cat([self.mixed_5a_conv(x), self.mixed_5a_pool(x)], 1)
