"""Image transforms built on torchvision: the evaluation view, the paper's training augmentation and the
automatic augmentation policies of later work (RandAugment, TrivialAugment, AutoAugment)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from inceptionnet.models import Preprocessing

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


# TF-slim's distort_color: brightness +-32/255 and saturation 0.5-1.5 ("fast"); hue +-0.2 and contrast
# 0.5-1.5 as well ("full"). torchvision multiplies the brightness by 1 +- 32/255 where TF adds up to
# +-32/255: the same change on white, a smaller one on darker pixels.
COLOR_DISTORTIONS: dict[str, dict[str, float]] = {
    "none": {},
    "fast": {"brightness": 32 / 255, "saturation": 0.5},
    "full": {"brightness": 32 / 255, "saturation": 0.5, "hue": 0.2, "contrast": 0.5},
}


# The choices of `--augment`: the paper's colour distortion ("inception") or a policy of later work, each
# applied after the random crop and flip, on the uint8 image. All draw from torch's global generator, which
# `SeededSamples` seeds per (seed, epoch, index).
AUGMENTS = ("inception", "randaugment", "trivialaugment", "autoaugment")


def _policy(augment: str, *, magnitude: int, num_ops: int, interpolation: InterpolationMode) -> Any:
    """The torchvision policy named by `augment` ("randaugment", "trivialaugment" or "autoaugment")."""
    if augment == "randaugment":
        return T.RandAugment(num_ops=num_ops, magnitude=magnitude, interpolation=interpolation)
    if augment == "trivialaugment":  # one op per image, its magnitude drawn uniformly: nothing to tune
        return T.TrivialAugmentWide(interpolation=interpolation)
    if augment == "autoaugment":  # the searched ImageNet policy: its magnitudes are part of it
        return T.AutoAugment(T.AutoAugmentPolicy.IMAGENET, interpolation=interpolation)
    raise ValueError(f"unknown augment {augment!r}; choose one of: {', '.join(AUGMENTS)}")


def train_transform(
    pre: Preprocessing,
    *,
    input_size: int | None = None,
    min_area: float = 0.05,
    color_distort: str = "fast",
    interpolation: str = "bilinear",
    augment: str = "inception",
    randaugment_magnitude: int = 9,
    randaugment_ops: int = 2,
    random_erasing: float = 0.0,
) -> T.Compose:
    """Training view: the released Inception recipe (TF-slim `preprocess_for_train`) or an automatic policy.

    A random crop covering `min_area`-100% of the image with aspect ratio 3/4-4/3, resized to the
    input size, and a random horizontal flip; then, with `augment="inception"`, colour distortion in
    random order, else the named policy (`color_distort` is not used: the policies distort colour
    themselves); then scaling to [-1, 1] with the model's mean and std (the same normalisation as
    `eval_transform`); then, with probability `random_erasing`, one random box of the normalised
    tensor is set to 0, the normalisation's mean colour (Zhong et al. 2017).
    """
    if color_distort not in COLOR_DISTORTIONS:
        raise ValueError(f"unknown color_distort {color_distort!r}; choose one of: {', '.join(COLOR_DISTORTIONS)}")
    size = input_size or pre.input_size
    mode = INTERPOLATIONS[interpolation]
    steps: list[Any] = [
        T.ToImage(),
        T.RandomResizedCrop(size, scale=(min_area, 1.0), ratio=(3 / 4, 4 / 3), interpolation=mode),
        T.RandomHorizontalFlip(),
    ]
    if augment != "inception":
        steps.append(_policy(augment, magnitude=randaugment_magnitude, num_ops=randaugment_ops, interpolation=mode))
    elif COLOR_DISTORTIONS[color_distort]:
        steps.append(T.ColorJitter(**COLOR_DISTORTIONS[color_distort]))
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(mean=list(pre.mean), std=list(pre.std))]
    if random_erasing > 0:
        steps.append(T.RandomErasing(p=random_erasing, value=0))
    return T.Compose(steps)
