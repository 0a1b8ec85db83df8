"""The residual Inception blocks of Inception-ResNet-v1 and -v2 (Figures 10-13 and 16-19) and the v1 stem (Fig. 14).

Every residual block computes out = ReLU(x + scale * up(concat(branches))), where `up` is a 1x1
convolution with bias and no BN that restores the input depth (the paper's "filter expansion").
Widths are keyword arguments: each network's numbers sit in its `InceptionResNetSpec` table
(inception_resnet.py).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from inceptionnet.models.inception_v3 import InceptionV3A, StemTo71, StemV3
from inceptionnet.models.layers import ConvBN, ResidualUp, max_pool_3x3_s2, scaled


class StemResNetV1(StemTo71):
    """Figure 14: the stem of Inception-ResNet-v1, 299x299x3 -> 35x35x256."""

    def __init__(self, in_chans: int, *, width: float = 1.0) -> None:
        super().__init__(in_chans, width=width)  # rows 1-6: 71x71x192
        c = partial(scaled, width=width)
        self.conv4b = ConvBN(c(192), c(256), 3, stride=2, valid=True)  # 35x35x256
        self.out_channels = c(256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv4b(self.to_71x71(x))


class StemResNetV2Released(StemV3):
    """Released Inception-ResNet-v2 stem (paper-spec 5.2 rows 1-8): the v3 stem, then Mixed_5b -> 35x35x320."""

    def __init__(self, in_chans: int, *, width: float = 1.0) -> None:
        super().__init__(in_chans, width=width)
        c = partial(scaled, width=width)
        self.mixed_5b = InceptionV3A(c(192), b0=c(96), b1=(c(48), c(64)), b2=(c(64), c(96), c(96)), pool=c(64))
        self.out_channels = self.mixed_5b.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixed_5b(super().forward(x))


class InceptionResNetA(nn.Module):
    """Figures 10 (v1) and 16 (v2): Inception-ResNet-A, 35x35 grid."""

    def __init__(
        self,
        channels: int,
        *,
        branch0: int,
        branch1: tuple[int, int],
        branch2: tuple[int, int, int],
        scale: float,
    ) -> None:
        super().__init__()
        self.branch0 = ConvBN(channels, branch0, 1)
        self.branch1 = nn.Sequential(ConvBN(channels, branch1[0], 1), ConvBN(branch1[0], branch1[1], 3))
        self.branch2 = nn.Sequential(
            ConvBN(channels, branch2[0], 1),
            ConvBN(branch2[0], branch2[1], 3),
            ConvBN(branch2[1], branch2[2], 3),
        )
        self.up = ResidualUp(branch0 + branch1[1] + branch2[2], channels, scale=scale)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)
        return self.act(x + self.up(mixed))


class InceptionResNetB(nn.Module):
    """Figures 11 (v1) and 17 (v2): Inception-ResNet-B, 17x17 grid."""

    def __init__(self, channels: int, *, branch0: int, branch1: tuple[int, int, int], scale: float) -> None:
        super().__init__()
        self.branch0 = ConvBN(channels, branch0, 1)
        self.branch1 = nn.Sequential(
            ConvBN(channels, branch1[0], 1),
            ConvBN(branch1[0], branch1[1], (1, 7)),
            ConvBN(branch1[1], branch1[2], (7, 1)),
        )
        self.up = ResidualUp(branch0 + branch1[2], channels, scale=scale)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.up(torch.cat([self.branch0(x), self.branch1(x)], 1)))


class ReductionResNetB(nn.Module):
    """Figures 12 (v1) and 18 (v2): Reduction-B, 17x17 -> 8x8; max pool last, as in the code."""

    def __init__(
        self,
        in_channels: int,
        *,
        branch0: tuple[int, int],
        branch1: tuple[int, int],
        branch2: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(
            ConvBN(in_channels, branch0[0], 1),
            ConvBN(branch0[0], branch0[1], 3, stride=2, valid=True),
        )
        self.branch1 = nn.Sequential(
            ConvBN(in_channels, branch1[0], 1),
            ConvBN(branch1[0], branch1[1], 3, stride=2, valid=True),
        )
        self.branch2 = nn.Sequential(
            ConvBN(in_channels, branch2[0], 1),
            ConvBN(branch2[0], branch2[1], 3),
            ConvBN(branch2[1], branch2[2], 3, stride=2, valid=True),
        )
        self.branch3 = max_pool_3x3_s2()
        self.out_channels = branch0[1] + branch1[1] + branch2[2] + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResNetC(nn.Module):
    """Figures 13 (v1) and 19 (v2): Inception-ResNet-C, 8x8 grid.

    `activate=False` (with scale 1.0) is the released code's last block: x + up, no ReLU.
    """

    def __init__(
        self,
        channels: int,
        *,
        branch0: int,
        branch1: tuple[int, int, int],
        scale: float,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.branch0 = ConvBN(channels, branch0, 1)
        self.branch1 = nn.Sequential(
            ConvBN(channels, branch1[0], 1),
            ConvBN(branch1[0], branch1[1], (1, 3)),
            ConvBN(branch1[1], branch1[2], (3, 1)),
        )
        self.up = ResidualUp(branch0 + branch1[2], channels, scale=scale)
        self.act: nn.Module = nn.ReLU(inplace=True) if activate else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.up(torch.cat([self.branch0(x), self.branch1(x)], 1)))
