"""Inception-v3 (arXiv:1512.00567), the paper's baseline, as released in TF-slim (paper-spec section 2).

The v3 paper's Table 1 has known typos; its authors point to the released code as the reference,
so the layer list below is the code's. Figure numbers refer to the Inception-v3 paper.
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
    max_pool_3x3_s2,
    scaled,
)


def _avg_pool(count_include_pad: bool) -> nn.AvgPool2d:
    # TF excludes padding from the average; torchvision's and timm's v3 include it.
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=count_include_pad)


class StemTo71(StemStart):
    """The released v3 stem up to Conv2d_4a, the same layers as Figure 14's first six: 299x299x3 -> 71x71x192.

    Inception-v3 (and the released Inception-ResNet-v2) then max pool; Inception-ResNet-v1 convolves.
    """

    def __init__(self, in_chans: int, *, width: float = 1.0) -> None:
        super().__init__(in_chans, width=width)  # conv1a, conv2a, conv2b: 147x147x64
        c = partial(scaled, width=width)
        self.pool3a = max_pool_3x3_s2()  # 73x73x64
        self.conv3b = ConvBN(c(64), c(80), 1)  # 73x73x80
        self.conv4a = ConvBN(c(80), c(192), 3, valid=True)  # 71x71x192

    def to_71x71(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv4a(self.conv3b(self.pool3a(self.start(x))))


class StemV3(StemTo71):
    """Inception-v3 stem as released (Conv2d_1a ... MaxPool_5a): 299x299x3 -> 35x35x192.

    Also the stem of the released Inception-ResNet-v2 (paper-spec 5.2 rows 1-7).
    """

    def __init__(self, in_chans: int, *, width: float = 1.0) -> None:
        super().__init__(in_chans, width=width)  # 71x71x192
        self.pool5a = max_pool_3x3_s2()  # 35x35x192
        self.out_channels = scaled(192, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool5a(self.to_71x71(x))


class InceptionV3A(nn.Module):
    """v3 Figure 5 as released (Mixed_5b-5d), 35x35 grid: the released code keeps one 5x5 branch.

    The widths are keyword arguments because the released Inception-ResNet-v2 reuses this block
    as its Mixed_5b with wider branches (96 | 48->64 | 64->96->96 | pool->64).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        b0: int = 64,
        b1: tuple[int, int] = (48, 64),
        b2: tuple[int, int, int] = (64, 96, 96),
        pool: int = 32,
        count_include_pad: bool = False,
    ) -> None:
        super().__init__()
        self.branch0 = ConvBN(in_channels, b0, 1)
        self.branch1 = nn.Sequential(ConvBN(in_channels, b1[0], 1), ConvBN(b1[0], b1[1], 5))
        self.branch2 = nn.Sequential(
            ConvBN(in_channels, b2[0], 1),
            ConvBN(b2[0], b2[1], 3),
            ConvBN(b2[1], b2[2], 3),
        )
        self.branch3 = nn.Sequential(_avg_pool(count_include_pad), ConvBN(in_channels, pool, 1))
        self.out_channels = b0 + b1[1] + b2[2] + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionV3A(nn.Module):
    """v3 Figure 10 as released (Mixed_6a): 35x35x288 -> 17x17x768."""

    def __init__(self, in_channels: int, *, width: float = 1.0) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.branch0 = ConvBN(in_channels, c(384), 3, stride=2, valid=True)
        self.branch1 = nn.Sequential(
            ConvBN(in_channels, c(64), 1),
            ConvBN(c(64), c(96), 3),
            ConvBN(c(96), c(96), 3, stride=2, valid=True),
        )
        self.branch2 = max_pool_3x3_s2()
        self.out_channels = c(384) + c(96) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionV3B(nn.Module):
    """v3 Figure 6 (n = 7), Mixed_6b-6e: 17x17x768, with `c7` channels inside the 7-tap branches."""

    def __init__(self, in_channels: int, *, c7: int, width: float = 1.0, count_include_pad: bool = False) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.branch0 = ConvBN(in_channels, c(192), 1)
        self.branch1 = nn.Sequential(
            ConvBN(in_channels, c7, 1),
            ConvBN(c7, c7, (1, 7)),
            ConvBN(c7, c(192), (7, 1)),
        )
        self.branch2 = nn.Sequential(
            ConvBN(in_channels, c7, 1),
            ConvBN(c7, c7, (7, 1)),
            ConvBN(c7, c7, (1, 7)),
            ConvBN(c7, c7, (7, 1)),
            ConvBN(c7, c(192), (1, 7)),
        )
        self.branch3 = nn.Sequential(_avg_pool(count_include_pad), ConvBN(in_channels, c(192), 1))
        self.out_channels = 4 * c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionV3B(nn.Module):
    """v3 Figure 10 as released (Mixed_7a): 17x17x768 -> 8x8x1280."""

    def __init__(self, in_channels: int, *, width: float = 1.0) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.branch0 = nn.Sequential(
            ConvBN(in_channels, c(192), 1),
            ConvBN(c(192), c(320), 3, stride=2, valid=True),
        )
        self.branch1 = nn.Sequential(
            ConvBN(in_channels, c(192), 1),
            ConvBN(c(192), c(192), (1, 7)),
            ConvBN(c(192), c(192), (7, 1)),
            ConvBN(c(192), c(192), 3, stride=2, valid=True),
        )
        self.branch2 = max_pool_3x3_s2()
        self.out_channels = c(320) + c(192) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionV3C(nn.Module):
    """v3 Figure 7 (expanded filter bank), Mixed_7b-7c: 8x8 grid -> 2048 channels."""

    def __init__(self, in_channels: int, *, width: float = 1.0, count_include_pad: bool = False) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.branch0 = ConvBN(in_channels, c(320), 1)
        self.branch1 = ConvBN(in_channels, c(384), 1)
        self.branch1_1x3 = ConvBN(c(384), c(384), (1, 3))
        self.branch1_3x1 = ConvBN(c(384), c(384), (3, 1))
        self.branch2 = nn.Sequential(ConvBN(in_channels, c(448), 1), ConvBN(c(448), c(384), 3))
        self.branch2_1x3 = ConvBN(c(384), c(384), (1, 3))
        self.branch2_3x1 = ConvBN(c(384), c(384), (3, 1))
        self.branch3 = nn.Sequential(_avg_pool(count_include_pad), ConvBN(in_channels, c(192), 1))
        self.out_channels = c(320) + 4 * c(384) + c(192)

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


class InceptionV3(InceptionNetwork):
    """Inception-v3 as released: stem, 3 x 35x35, reduction, 4 x 17x17, reduction, 2 x 8x8 blocks.

    `count_include_pad=True` reproduces torchvision's and timm's averaging, which counts the zero
    padding of the in-block 3x3 average pools; the default follows TensorFlow, which does not.
    """

    model_name = "inception_v3"

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        aux_logits: bool = False,
        width: float = 1.0,
        count_include_pad: bool = False,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__(locals())
        c = partial(scaled, width=width)
        pad = count_include_pad
        self.stem = StemV3(in_chans, width=width)  # 35x35x192
        ch = self.stem.out_channels
        blocks_a = []
        for pool in (32, 64, 64):  # Mixed_5b, 5c, 5d
            block = InceptionV3A(
                ch, b0=c(64), b1=(c(48), c(64)), b2=(c(64), c(96), c(96)), pool=c(pool), count_include_pad=pad
            )
            blocks_a.append(block)
            ch = blocks_a[-1].out_channels
        self.blocks_a = BlockStage(*blocks_a)  # 35x35x288
        self.reduction_a = ReductionV3A(ch, width=width)  # 17x17x768
        ch = self.reduction_a.out_channels
        self.blocks_b = BlockStage(
            *[InceptionV3B(ch, c7=c(c7), width=width, count_include_pad=pad) for c7 in (128, 160, 160, 192)]
        )  # 17x17x768
        self.reduction_b = ReductionV3B(ch, width=width)  # 8x8x1280
        ch = self.reduction_b.out_channels
        mixed_7b = InceptionV3C(ch, width=width, count_include_pad=pad)
        mixed_7c = InceptionV3C(mixed_7b.out_channels, width=width, count_include_pad=pad)
        self.blocks_c = BlockStage(mixed_7b, mixed_7c)  # 8x8x2048
        ch = self.blocks_c[-1].out_channels
        self.head = ClassifierHead(ch, num_classes, drop_rate=drop_rate)  # 2048 -> classes
        # Auxiliary classifier on Mixed_6e, as in the v3 paper and the released code.
        self.aux = AuxHead(self.reduction_a.out_channels, num_classes, width=width) if aux_logits else None
        self.feature_info = [
            FeatureInfo("stride2", "stem.conv2b", c(64), 2),  # 147x147x64
            FeatureInfo("stride4", "stem.conv4a", c(192), 4),  # 71x71x192
            FeatureInfo("stride8", "blocks_a", self.blocks_a[-1].out_channels, 8),  # 35x35x288
            FeatureInfo("stride16", "blocks_b", self.reduction_a.out_channels, 16),  # 17x17x768
            FeatureInfo("stride32", "blocks_c", ch, 32),  # 8x8x2048
        ]
        init_weights(self)

    def forward_early(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks_b(self.reduction_a(self.blocks_a(self.stem(x))))

    def forward_late(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks_c(self.reduction_b(x))
