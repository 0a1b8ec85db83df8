"""Image transforms (and, for training, datasets) built on torchvision."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision import datasets
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


class ImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder (`root/<class>/<image>`), with clear errors and no fatal images.

    A missing or empty folder raises a ValueError that names the folder and the expected layout.
    An image that cannot be decoded (corrupt, truncated, not an image) is not fatal: `__getitem__`
    returns None for it, and `collate_skipping_bad` drops it from the batch and counts it.
    """

    def __init__(self, root: str | Path, *, transform: Callable[[Image.Image], Any] | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"dataset folder {root} does not exist; expected {root}/<class name>/<image files>")
        try:
            super().__init__(str(root), transform=transform)
        except FileNotFoundError as err:
            raise ValueError(
                f"dataset folder {root} has no class folders with images ({err}); "
                f"expected {root}/<class name>/<image files> (.jpg, .jpeg, .png, ...)"
            ) from None

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        path, target = self.samples[index]
        try:
            with Image.open(path) as f:
                image = f.convert("RGB")  # decodes the whole file: truncated data fails here
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return None
        return (self.transform(image) if self.transform is not None else image), target


@dataclass
class Batch:
    images: torch.Tensor
    targets: torch.Tensor
    skipped: int  # unreadable images dropped from this batch


def collate_skipping_bad(samples: list[tuple[torch.Tensor, int] | None]) -> Batch:
    """Stack the readable samples of a batch; count the unreadable ones (returned as None)."""
    good = [s for s in samples if s is not None]
    skipped = len(samples) - len(good)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    images = torch.stack([s[0] for s in good])
    targets = torch.tensor([s[1] for s in good], dtype=torch.long)
    return Batch(images, targets, skipped)
