"""Image transforms (and, for training, datasets) built on torchvision."""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from inceptionnet.models.base import Preprocessing

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def eval_transform(pre: Preprocessing, *, input_size: int | None = None) -> T.Compose:
    """Evaluation view: resize the shorter side to size / crop_fraction, central crop, scale to [-1, 1].

    At 299 with crop fraction 0.875 this resizes to 342 and crops the central 299x299, i.e. the
    central 87.5% of the image, as TF-slim's `central_crop` followed by a resize.
    """
    size = input_size or pre.input_size
    resize = math.floor(size / pre.crop_fraction)
    return T.Compose(
        [
            T.ToImage(),
            T.Resize(resize, interpolation=INTERPOLATIONS[pre.interpolation], antialias=True),
            T.CenterCrop(size),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(pre.mean), std=list(pre.std)),
        ]
    )

