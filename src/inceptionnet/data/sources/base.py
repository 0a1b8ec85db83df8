"""What every data source gives the loaders: one split's images, their targets and the class names.

A source lists its samples once, in a canonical order (sorted by class, then file name, for a folder;
see each source), so that the seeded samplers (`data.loaders`) visit the same images in the same
order wherever the data came from. A sample whose image cannot be decoded is not fatal: `__getitem__`
returns None for it, and `collate_skipping_bad` drops it from the batch and counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from inceptionnet.data.images import UNREADABLE, read_image

Target = int | tuple[int, ...]  # a class index, or the class indices of a multi-label sample


class SourceError(ValueError):
    """A data source that cannot be read as asked; the message names the file, row or shard and the fix."""


class ImageSource(Dataset):
    """One split of a data source, map-style: sample i is (transform(image i), target i), or None when
    image i cannot be decoded.

    Subclasses set `classes` (the class names, in target order), `targets` (one per sample) and
    `origin` (what the split was read from, for messages), and implement `load(i)` (the decoded RGB
    image; raises one of `data.images.UNREADABLE` for a corrupt one) and `where(i)` (where sample i
    comes from: a file, a row, a shard member).
    """

    classes: list[str]
    targets: list[Target]
    origin: str
    # What each target becomes on its way out (torchvision's `target_transform`): e.g. MultiHot, for a
    # multi-label network's loss and scores; None gives it as stored.
    target_transform: Callable[[Target], Any] | None = None

    def __init__(self, *, transform: Callable[[Image.Image], Any] | None = None) -> None:
        self.transform = transform

    def load(self, index: int) -> Image.Image:
        raise NotImplementedError

    def where(self, index: int) -> str:
        raise NotImplementedError

    def encoded(self, index: int) -> tuple[bytes, str] | None:
        """Image i as stored (its encoded bytes and file extension, e.g. "jpg"), or None where the source holds
        no encoded file: what lets `inceptionnet shards` copy images without decoding and re-encoding them."""
        return None

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only the samples at `indices` (in that order), in place; subclasses keep their own lists too."""
        self.targets = [self.targets[i] for i in indices]

    @property
    def multi_label(self) -> bool:
        """Whether some sample has several labels (a tuple target)."""
        return any(isinstance(t, tuple) for t in self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Target] | None:
        try:
            image = self.load(index)
        except UNREADABLE:
            return None
        if self.transform is not None:
            image = self.transform(image)
        target = self.targets[index]
        return image, (self.target_transform(target) if self.target_transform is not None else target)

    def give_multi_hot(self, multi_hot: bool = True) -> None:
        """Give each target as a multi-hot vector over this source's classes (MultiHot), or as stored."""
        self.target_transform = MultiHot(len(self.classes)) if multi_hot else None


class MultiHot:
    """A target transform: a class index, or the class indices of a multi-label sample, as a float vector with 1
    at each of its classes: what a multi-label loss and multi-label scores compare the per-class outputs with."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def __call__(self, target: Target) -> torch.Tensor:
        vector = torch.zeros(self.num_classes)
        vector[list(target) if isinstance(target, tuple) else target] = 1.0
        return vector


class FileSource(ImageSource):
    """A source whose images are files (`paths`, one per sample): the image folder and the metadata folder."""

    paths: list[Path]

    def load(self, index: int) -> Image.Image:
        return read_image(self.paths[index])

    def encoded(self, index: int) -> tuple[bytes, str]:
        path = self.paths[index]
        return path.read_bytes(), path.suffix[1:].lower()

    def where(self, index: int) -> str:
        return str(self.paths[index])

    def keep(self, indices: Sequence[int]) -> None:
        self.paths = [self.paths[i] for i in indices]
        super().keep(indices)
