"""Reading images: one decoder, one tuple of decode errors, and an ImageFolder where a bad image is not fatal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision import datasets

# What PIL raises for a file that is not a readable image (corrupt, truncated, not an image, too large).
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(path: str | Path) -> Image.Image:
    """Decode the whole file to RGB (truncated data fails here, not later in a batch); raises one of UNREADABLE."""
    with Image.open(path) as f:
        return f.convert("RGB")


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
            image = read_image(path)
        except UNREADABLE:
            return None
        return (self.transform(image) if self.transform is not None else image), target


@dataclass
class Batch:
    """One loader batch: the stacked readable images, their class indices, and how many were unreadable."""

    images: torch.Tensor
    targets: torch.Tensor
    skipped: int  # unreadable images dropped from this batch

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory: DataLoader(pin_memory=True) calls this on any batch type that has it
        (without it a dataclass batch is passed on unpinned, and the copy to the GPU cannot overlap compute)."""
        return Batch(self.images.pin_memory(), self.targets.pin_memory(), self.skipped)


def collate_skipping_bad(samples: list[tuple[torch.Tensor, int] | None]) -> Batch:
    """Stack the readable samples of a batch; count the unreadable ones (returned as None)."""
    good = [s for s in samples if s is not None]
    skipped = len(samples) - len(good)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    images = torch.stack([s[0] for s in good])
    targets = torch.tensor([s[1] for s in good], dtype=torch.long)
    return Batch(images, targets, skipped)
