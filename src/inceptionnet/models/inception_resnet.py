"""Inception-ResNet-v1 and -v2 (paper Figures 10-19, schema Figure 15), as drawn and as released.

Both versions share one topology per block; the widths differ and sit in one table per network
(`InceptionResNetSpec`). Inception-ResNet-v2 exists twice: as the paper draws it and as released
with the public ImageNet weights (paper-spec sections 5 and 8); comparing IR_V2_PAPER with
IR_V2_RELEASED below is the readable list of differences.

Every residual block computes out = ReLU(x + scale * up(concat(branches))), where `up` is a 1x1
convolution with bias and no BN that restores the input depth (the paper's "filter expansion").
The width of each residual stage is therefore set by its input, which is why the figures' "1154"
(Fig. 17) and "2048" (Fig. 19) cannot be right: the additions need 1152 and 2144.
Shapes in comments are for a 299 x 299 input at width 1.0 (v1 / paper v2 / released v2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from inceptionnet.models.base import FeatureInfo, InceptionNetwork, init_weights
from inceptionnet.models.inception_v3 import InceptionV3A, StemV3
from inceptionnet.models.inception_v4 import ReductionA, Stem
from inceptionnet.models.layers import (
    AuxHead,
    ClassifierHead,
    ConvBN,
    ResidualUp,
    max_pool_3x3_s2,
    scaled,
)


@dataclass(frozen=True)
class InceptionResNetSpec:
    """The numbers of one Inception-ResNet network, each traced to its figure or table."""

    name: str
    stem: str  # "figure14" (v1), "figure3" (the Inception-v4 stem), "released" (v3 stem + Mixed_5b)
    depths: tuple[int, int, int]  # Figure 15: number of A, B and C blocks
    a_branch0: int  # Figure 10 / 16: 1x1
    a_branch1: tuple[int, int]  # 1x1 -> 3x3
    a_branch2: tuple[int, int, int]  # 1x1 -> 3x3 -> 3x3
    reduction_a: tuple[int, int, int, int]  # Table 1: k, l, m, n
    b_branch0: int  # Figure 11 / 17: 1x1
    b_branch1: tuple[int, int, int]  # 1x1 -> 1x7 -> 7x1
    rb_branch0: tuple[int, int]  # Figure 12 / 18: 1x1 -> 3x3/2 V
    rb_branch1: tuple[int, int]  # 1x1 -> 3x3/2 V
    rb_branch2: tuple[int, int, int]  # 1x1 -> 3x3 -> 3x3/2 V
    c_branch0: int  # Figure 13 / 19: 1x1
    c_branch1: tuple[int, int, int]  # 1x1 -> 1x3 -> 3x1
    scales: tuple[float, float, float] = (0.17, 0.10, 0.20)  # A, B, C; Section 3.3 says 0.1-0.3
    last_block_linear: bool = False  # released: the last C block has scale 1.0 and no ReLU
    final_conv: int | None = None  # released: Conv2d_7b 1x1 before pooling
    has_aux: bool = False  # released: auxiliary head on the 17x17 grid ("PreAuxLogits")


IR_V1 = InceptionResNetSpec(
    name="inception_resnet_v1",
    stem="figure14",  # -> 35x35x256
    depths=(5, 10, 5),
    a_branch0=32,
    a_branch1=(32, 32),
    a_branch2=(32, 32, 32),
    reduction_a=(192, 192, 256, 384),  # -> 17x17x896
    b_branch0=128,
    b_branch1=(128, 128, 128),
    rb_branch0=(256, 384),
    rb_branch1=(256, 256),
    rb_branch2=(256, 256, 256),  # -> 8x8x1792
    c_branch0=192,
    c_branch1=(192, 192, 192),
)

IR_V2_PAPER = InceptionResNetSpec(
    name="inception_resnet_v2_paper",
    stem="figure3",  # -> 35x35x384
    depths=(5, 10, 5),
    a_branch0=32,
    a_branch1=(32, 32),
    a_branch2=(32, 48, 64),
    reduction_a=(256, 256, 384, 384),  # -> 17x17x1152
    b_branch0=192,
    b_branch1=(128, 160, 192),
    rb_branch0=(256, 384),
    rb_branch1=(256, 288),
    rb_branch2=(256, 288, 320),  # -> 8x8x2144
    c_branch0=192,
    c_branch1=(192, 224, 256),
)

IR_V2_RELEASED = InceptionResNetSpec(
    name="inception_resnet_v2",
    stem="released",  # -> 35x35x320
    depths=(10, 20, 10),
    a_branch0=32,
    a_branch1=(32, 32),
    a_branch2=(32, 48, 64),
    reduction_a=(256, 256, 384, 384),  # -> 17x17x1088
    b_branch0=192,
    b_branch1=(128, 160, 192),
    rb_branch0=(256, 384),
    rb_branch1=(256, 288),
    rb_branch2=(256, 288, 320),  # -> 8x8x2080
    c_branch0=192,
    c_branch1=(192, 224, 256),
    last_block_linear=True,
    final_conv=1536,  # -> 8x8x1536
    has_aux=True,
)


class StemResNetV1(nn.Module):
    """Figure 14: the stem of Inception-ResNet-v1, 299x299x3 -> 35x35x256."""

    def __init__(self, in_chans: int, *, width: float = 1.0) -> None:
        super().__init__()
        c = partial(scaled, width=width)
        self.conv1a = ConvBN(in_chans, c(32), 3, stride=2, valid=True)  # 149x149x32
        self.conv2a = ConvBN(c(32), c(32), 3, valid=True)  # 147x147x32
        self.conv2b = ConvBN(c(32), c(64), 3)  # 147x147x64
        self.pool3a = max_pool_3x3_s2()  # 73x73x64
        self.conv3b = ConvBN(c(64), c(80), 1)  # 73x73x80
        self.conv4a = ConvBN(c(80), c(192), 3, valid=True)  # 71x71x192
        self.conv4b = ConvBN(c(192), c(256), 3, stride=2, valid=True)  # 35x35x256
        self.out_channels = c(256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool3a(self.conv2b(self.conv2a(self.conv1a(x))))
        return self.conv4b(self.conv4a(self.conv3b(x)))


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
        residual = self.up(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1))
        return self.act(x + residual)


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
        residual = self.up(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return self.act(x + residual)


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
        residual = self.up(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return self.act(x + residual)


class InceptionResNet(InceptionNetwork):
    """Figure 15: stem, A blocks, Reduction-A, B blocks, Reduction-B, C blocks, pool, dropout, FC.

    `scales` overrides the residual scales of the A, B and C stages (1.0 = unscaled residuals).
    """

    def __init__(
        self,
        spec: InceptionResNetSpec,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        aux_logits: bool = False,
        width: float = 1.0,
        scales: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__(in_chans=in_chans)
        if aux_logits and not spec.has_aux:
            raise ValueError(f"{spec.name} has no auxiliary head (the paper describes none); use aux_logits=False")
        self.model_name = spec.name
        self.spec = spec
        scale_a, scale_b, scale_c = spec.scales if scales is None else scales
        c = partial(scaled, width=width)
        n_a, n_b, n_c = spec.depths

        self.stem = {"figure14": StemResNetV1, "figure3": Stem, "released": StemResNetV2Released}[spec.stem](
            in_chans, width=width
        )  # 35x35 x 256 / 384 / 320
        ch = self.stem.out_channels
        self.blocks_a = nn.Sequential(
            *[
                InceptionResNetA(
                    ch,
                    branch0=c(spec.a_branch0),
                    branch1=(c(spec.a_branch1[0]), c(spec.a_branch1[1])),
                    branch2=tuple(c(w) for w in spec.a_branch2),
                    scale=scale_a,
                )
                for _ in range(n_a)
            ]
        )  # 35x35 x 256 / 384 / 320
        k, l, m, n = (c(w) for w in spec.reduction_a)  # noqa: E741 (Table 1 letters)
        self.reduction_a = ReductionA(ch, k=k, l=l, m=m, n=n)  # 17x17 x 896 / 1152 / 1088
        ch = self.reduction_a.out_channels
        self.blocks_b = nn.Sequential(
            *[
                InceptionResNetB(
                    ch,
                    branch0=c(spec.b_branch0),
                    branch1=tuple(c(w) for w in spec.b_branch1),
                    scale=scale_b,
                )
                for _ in range(n_b)
            ]
        )  # 17x17 x 896 / 1152 / 1088
        self.reduction_b = ReductionResNetB(
            ch,
            branch0=(c(spec.rb_branch0[0]), c(spec.rb_branch0[1])),
            branch1=(c(spec.rb_branch1[0]), c(spec.rb_branch1[1])),
            branch2=tuple(c(w) for w in spec.rb_branch2),
        )  # 8x8 x 1792 / 2144 / 2080
        ch = self.reduction_b.out_channels
        self.blocks_c = nn.Sequential(
            *[
                InceptionResNetC(
                    ch,
                    branch0=c(spec.c_branch0),
                    branch1=tuple(c(w) for w in spec.c_branch1),
                    scale=1.0 if last else scale_c,
                    activate=not last,
                )
                for last in [spec.last_block_linear and i == n_c - 1 for i in range(n_c)]
            ]
        )  # 8x8 x 1792 / 2144 / 2080
        self.conv_7b = ConvBN(ch, c(spec.final_conv), 1) if spec.final_conv else None  # 8x8x1536 (released)
        last_channels = self.conv_7b.out_channels if self.conv_7b is not None else ch
        self.head = ClassifierHead(last_channels, num_classes, drop_rate=drop_rate)
        # Released code only: auxiliary classifier on the 17x17 grid ("PreAuxLogits").
        self.aux = AuxHead(self.reduction_a.out_channels, num_classes, width=width) if aux_logits else None

        stride4 = ("stem.cat", c(64) + c(96)) if spec.stem == "figure3" else ("stem.conv4a", c(192))
        self.feature_info = [
            FeatureInfo("stride2", "stem.conv2b", c(64), 2),
            FeatureInfo("stride4", stride4[0], stride4[1], 4),
            FeatureInfo("stride8", "blocks_a", self.stem.out_channels, 8),
            FeatureInfo("stride16", "blocks_b", self.reduction_a.out_channels, 16),
            FeatureInfo("stride32", "conv_7b" if self.conv_7b is not None else "blocks_c", last_channels, 32),
        ]
        init_weights(self)

    def forward_early(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks_b(self.reduction_a(self.blocks_a(self.stem(x))))

    def forward_late(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks_c(self.reduction_b(x))
        return self.conv_7b(x) if self.conv_7b is not None else x
