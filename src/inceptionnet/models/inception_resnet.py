"""Inception-ResNet-v1 and -v2 (paper Figures 10-19, schema Figure 15), as drawn and as released.

Both versions share one topology per block; the widths differ and sit in one table per network
(`InceptionResNetSpec`; the blocks themselves are in residual_blocks.py). Inception-ResNet-v2 exists
twice: as the paper draws it and as released with the public ImageNet weights (paper-spec sections 5
and 8); comparing IR_V2_PAPER with IR_V2_RELEASED below is the readable list of differences.

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

from inceptionnet.models.base import FeatureInfo, InceptionNetwork, Preprocessing, init_weights
from inceptionnet.models.inception_v4 import ReductionA, Stem
from inceptionnet.models.layers import (
    AuxHead,
    BlockStage,
    ClassifierHead,
    ConvBN,
    scaled,
)
from inceptionnet.models.residual_blocks import (
    InceptionResNetA,
    InceptionResNetB,
    InceptionResNetC,
    ReductionResNetB,
    StemResNetV1,
    StemResNetV2Released,
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


STEMS = {"figure14": StemResNetV1, "figure3": Stem, "released": StemResNetV2Released}


def _stage_a(spec: InceptionResNetSpec, channels: int, *, width: float, scale: float) -> BlockStage:
    """Figure 10 / 16, repeated: the 35x35 residual stage."""
    c = partial(scaled, width=width)
    branch1, branch2 = (c(spec.a_branch1[0]), c(spec.a_branch1[1])), tuple(c(w) for w in spec.a_branch2)
    return BlockStage(
        *[
            InceptionResNetA(channels, branch0=c(spec.a_branch0), branch1=branch1, branch2=branch2, scale=scale)
            for _ in range(spec.depths[0])
        ]
    )


def _stage_b(spec: InceptionResNetSpec, channels: int, *, width: float, scale: float) -> BlockStage:
    """Figure 11 / 17, repeated: the 17x17 residual stage."""
    c = partial(scaled, width=width)
    branch1 = tuple(c(w) for w in spec.b_branch1)
    return BlockStage(
        *[
            InceptionResNetB(channels, branch0=c(spec.b_branch0), branch1=branch1, scale=scale)
            for _ in range(spec.depths[1])
        ]
    )


def _reduction_b(spec: InceptionResNetSpec, channels: int, *, width: float) -> ReductionResNetB:
    """Figure 12 / 18: 17x17 to 8x8."""
    c = partial(scaled, width=width)
    return ReductionResNetB(
        channels,
        branch0=(c(spec.rb_branch0[0]), c(spec.rb_branch0[1])),
        branch1=(c(spec.rb_branch1[0]), c(spec.rb_branch1[1])),
        branch2=tuple(c(w) for w in spec.rb_branch2),
    )


def _stage_c(spec: InceptionResNetSpec, channels: int, *, width: float, scale: float) -> BlockStage:
    """Figure 13 / 19, repeated: the 8x8 residual stage (released: the last block linear and unscaled)."""
    c = partial(scaled, width=width)
    n = spec.depths[2]
    return BlockStage(
        *[
            InceptionResNetC(
                channels,
                branch0=c(spec.c_branch0),
                branch1=tuple(c(w) for w in spec.c_branch1),
                scale=1.0 if last else scale,
                activate=not last,
            )
            for last in [spec.last_block_linear and i == n - 1 for i in range(n)]
        ]
    )


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
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__(locals())
        if aux_logits and not spec.has_aux:
            raise ValueError(f"{spec.name} has no auxiliary head (the paper describes none); use aux_logits=False")
        self.model_name = spec.name
        self.spec = spec
        scale_a, scale_b, scale_c = spec.scales if scales is None else scales
        c = partial(scaled, width=width)

        self.stem = STEMS[spec.stem](in_chans, width=width)  # 35x35 x 256 / 384 / 320
        ch = self.stem.out_channels
        self.blocks_a = _stage_a(spec, ch, width=width, scale=scale_a)  # 35x35 x 256 / 384 / 320
        k, l, m, n = (c(w) for w in spec.reduction_a)  # noqa: E741 (Table 1 letters)
        self.reduction_a = ReductionA(ch, k=k, l=l, m=m, n=n)  # 17x17 x 896 / 1152 / 1088
        ch = self.reduction_a.out_channels
        self.blocks_b = _stage_b(spec, ch, width=width, scale=scale_b)  # 17x17 x 896 / 1152 / 1088
        self.reduction_b = _reduction_b(spec, ch, width=width)  # 8x8 x 1792 / 2144 / 2080
        ch = self.reduction_b.out_channels
        self.blocks_c = _stage_c(spec, ch, width=width, scale=scale_c)  # 8x8 x 1792 / 2144 / 2080
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
