"""Inception-v4 (paper Figures 3-9), with the released code's branch orders and kernel orders.

Where the figures and the released TF-slim code differ (paper-spec section 3.2: Fig. 3 missing
stride, Fig. 5 "1x7 twice" typo and 7-tap order, Fig. 6 3x1/1x3 order) the code is followed, since
the published weights depend on it; docs/architecture.md lists each difference.

Shapes in comments are H x W x C for a 299 x 299 input at width 1.0.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from inceptionnet.models.base import FeatureInfo, InceptionNetwork, Preprocessing, init_weights
from inceptionnet.models.layers import (
    AuxHead,
    BlockStage,
    ClassifierHead,
    ConvBN,
    StemStart,
    avg_pool_3x3_same,
    max_pool_3x3_s2,
    scaled,
)


class Stem(StemStart):
    """Figure 3: the stem of Inception-v4 and of the paper's Inception-ResNet-v2, 299x299x3 -> 35x35x384."""

    def __init__(self, in_chans: int, *, width: float = 1.0) -> None:
        super().__init__(in_chans, width=width)  # conv1a, conv2a, conv2b: 147x147x64
        c = partial(scaled, width=width)
        # "Mixed_3a": max pool first, then conv (the code's order) -> 73x73x160
        self.mixed_3a_pool = max_pool_3x3_s2()
        self.mixed_3a_conv = ConvBN(c(64), c(96), 3, stride=2, valid=True)
        mixed_3a = c(64) + c(96)
        # "Mixed_4a" -> 71x71x192; the code runs 1x7 before 7x1
        self.mixed_4a_branch0 = nn.Sequential(
            ConvBN(mixed_3a, c(64), 1),
            ConvBN(c(64), c(96), 3, valid=True),
        )
        self.mixed_4a_branch1 = nn.Sequential(
            ConvBN(mixed_3a, c(64), 1),
            ConvBN(c(64), c(64), (1, 7)),
            ConvBN(c(64), c(64), (7, 1)),
            ConvBN(c(64), c(96), 3, valid=True),
        )
        # "Mixed_5a": conv first, then max pool -> 35x35x384 (the figure omits the conv's stride 2)
        self.mixed_5a_conv = ConvBN(c(96) + c(96), c(192), 3, stride=2, valid=True)
        self.mixed_5a_pool = max_pool_3x3_s2()
        self.out_channels = c(192) + c(96) + c(96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixed_5a(self.mixed_4a(self.mixed_3a(self.start(x))))

    def mixed_3a(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mixed_3a_pool(x), self.mixed_3a_conv(x)], 1)

    def mixed_4a(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mixed_4a_branch0(x), self.mixed_4a_branch1(x)], 1)

    def mixed_5a(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mixed_5a_conv(x), self.mixed_5a_pool(x)], 1)


class InceptionA(nn.Module):
    """Figure 4: Inception-A, 35x35 grid (384 -> 384 channels)."""

    def __init__(self, in_channels: int, *, width: float = 1.0) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.branch0 = ConvBN(in_channels, c(96), 1)
        self.branch1 = nn.Sequential(ConvBN(in_channels, c(64), 1), ConvBN(c(64), c(96), 3))
        self.branch2 = nn.Sequential(
            ConvBN(in_channels, c(64), 1),
            ConvBN(c(64), c(96), 3),
            ConvBN(c(96), c(96), 3),
        )
        self.branch3 = nn.Sequential(avg_pool_3x3_same(), ConvBN(in_channels, c(96), 1))
        self.out_channels = 4 * c(96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionA(nn.Module):
    """Figure 7: Reduction-A, 35x35 -> 17x17, with Table 1's filter counts k, l, m, n.

    Shared by Inception-v4 (192/224/256/384), Inception-ResNet-v1 (192/192/256/384) and
    Inception-ResNet-v2 (256/256/384/384). Output channels: n + m + in_channels.
    """

    def __init__(self, in_channels: int, *, k: int, l: int, m: int, n: int) -> None:  # noqa: E741 (Table 1 letters)
        super().__init__()
        self.branch0 = ConvBN(in_channels, n, 3, stride=2, valid=True)
        self.branch1 = nn.Sequential(
            ConvBN(in_channels, k, 1),
            ConvBN(k, l, 3),
            ConvBN(l, m, 3, stride=2, valid=True),
        )
        self.branch2 = max_pool_3x3_s2()
        self.out_channels = n + m + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionB(nn.Module):
    """Figure 5: Inception-B, 17x17 grid (1024 -> 1024 channels); kernel orders of the released code."""

    def __init__(self, in_channels: int, *, width: float = 1.0) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.branch0 = ConvBN(in_channels, c(384), 1)
        self.branch1 = nn.Sequential(
            ConvBN(in_channels, c(192), 1),
            ConvBN(c(192), c(224), (1, 7)),
            ConvBN(c(224), c(256), (7, 1)),  # the figure repeats 1x7 here: a typo
        )
        self.branch2 = nn.Sequential(
            ConvBN(in_channels, c(192), 1),
            ConvBN(c(192), c(192), (7, 1)),
            ConvBN(c(192), c(224), (1, 7)),
            ConvBN(c(224), c(224), (7, 1)),
            ConvBN(c(224), c(256), (1, 7)),
        )
        self.branch3 = nn.Sequential(avg_pool_3x3_same(), ConvBN(in_channels, c(128), 1))
        self.out_channels = c(384) + c(256) + c(256) + c(128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionB(nn.Module):
    """Figure 8: Reduction-B of Inception-v4, 17x17x1024 -> 8x8x1536."""

    def __init__(self, in_channels: int, *, width: float = 1.0) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.branch0 = nn.Sequential(
            ConvBN(in_channels, c(192), 1),
            ConvBN(c(192), c(192), 3, stride=2, valid=True),
        )
        self.branch1 = nn.Sequential(
            ConvBN(in_channels, c(256), 1),
            ConvBN(c(256), c(256), (1, 7)),
            ConvBN(c(256), c(320), (7, 1)),
            ConvBN(c(320), c(320), 3, stride=2, valid=True),
        )
        self.branch2 = max_pool_3x3_s2()
        self.out_channels = c(192) + c(320) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionC(nn.Module):
    """Figure 6: Inception-C, 8x8 grid (1536 -> 1536 channels); 3x1 before 1x3 as in the code."""

    def __init__(self, in_channels: int, *, width: float = 1.0) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.branch0 = ConvBN(in_channels, c(256), 1)
        self.branch1 = ConvBN(in_channels, c(384), 1)
        self.branch1_1x3 = ConvBN(c(384), c(256), (1, 3))
        self.branch1_3x1 = ConvBN(c(384), c(256), (3, 1))
        self.branch2 = nn.Sequential(
            ConvBN(in_channels, c(384), 1),
            ConvBN(c(384), c(448), (3, 1)),
            ConvBN(c(448), c(512), (1, 3)),
        )
        self.branch2_1x3 = ConvBN(c(512), c(256), (1, 3))
        self.branch2_3x1 = ConvBN(c(512), c(256), (3, 1))
        self.branch3 = nn.Sequential(avg_pool_3x3_same(), ConvBN(in_channels, c(256), 1))
        self.out_channels = 6 * c(256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, x1, x2, x3 = self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)
        return torch.cat(
            [
                x0,
                self.branch1_1x3(x1),
                self.branch1_3x1(x1),
                self.branch2_1x3(x2),
                self.branch2_3x1(x2),
                x3,
            ],
            1,
        )


class InceptionV4(InceptionNetwork):
    """Figure 9: Inception-v4. Stem, 4 x Inception-A, Reduction-A, 7 x Inception-B, Reduction-B, 3 x Inception-C."""

    model_name = "inception_v4"

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        aux_logits: bool = False,
        width: float = 1.0,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__(locals())
        c = partial(scaled, width=width)
        self.stem = Stem(in_chans, width=width)  # 35x35x384
        ch = self.stem.out_channels
        self.blocks_a = BlockStage(*[InceptionA(ch, width=width) for _ in range(4)])  # 35x35x384
        self.reduction_a = ReductionA(ch, k=c(192), l=c(224), m=c(256), n=c(384))  # 17x17x1024
        ch = self.reduction_a.out_channels
        self.blocks_b = BlockStage(*[InceptionB(ch, width=width) for _ in range(7)])  # 17x17x1024
        self.reduction_b = ReductionB(ch, width=width)  # 8x8x1536
        ch = self.reduction_b.out_channels
        self.blocks_c = BlockStage(*[InceptionC(ch, width=width) for _ in range(3)])  # 8x8x1536
        self.head = ClassifierHead(ch, num_classes, drop_rate=drop_rate)  # 1536 -> classes
        # Released code only: auxiliary classifier on Mixed_6h (the last Inception-B).
        self.aux = AuxHead(self.reduction_a.out_channels, num_classes, width=width) if aux_logits else None
        self.feature_info = [
            FeatureInfo("stride2", "stem.conv2b", c(64), 2),  # 147x147x64
            FeatureInfo("stride4", "stem.cat", c(64) + c(96), 4),  # 73x73x160 (Mixed_3a)
            FeatureInfo("stride8", "blocks_a", self.stem.out_channels, 8),  # 35x35x384
            FeatureInfo("stride16", "blocks_b", self.reduction_a.out_channels, 16),  # 17x17x1024
            FeatureInfo("stride32", "blocks_c", ch, 32),  # 8x8x1536
        ]
        init_weights(self)

    def forward_early(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks_b(self.reduction_a(self.blocks_a(self.stem(x))))

    def forward_late(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks_c(self.reduction_b(x))
