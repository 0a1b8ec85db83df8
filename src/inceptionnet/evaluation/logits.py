"""One network's logits over a split or a folder of images, one central view each, as predict and serve see them.

What calibration is fitted on (`inceptionnet calibrate`) and what `eval --ood` scores: each image decoded,
prepared with the network's own evaluation transform (its card's preprocessing, the transform predict
uses), through the network in eval mode. A split's labels are lined up with the network's outputs by
classmap.py (by name where the network names its classes). Unreadable images are skipped and counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets.folder import IMG_EXTENSIONS

from inceptionnet.data import UNREADABLE, collate_skipping_bad, eval_transform, open_split, read_image
from inceptionnet.data.images import files_under
from inceptionnet.evaluation.classmap import map_classes
from inceptionnet.export.runtimes import network_card
from inceptionnet.models import Preprocessing


@dataclass(frozen=True)
class Logits:
    """The logits (N, outputs) of the readable images, their outputs' classes (N,) where labelled, the skipped."""

    logits: torch.Tensor  # float32, on the CPU; TF's background output dropped
    targets: torch.Tensor | None  # the output index of each image's class; None for unlabelled images
    skipped: int


def split_logits(
    model: nn.Module,
    data: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> Logits:
    """The logits and classes of one labelled split (any data source `data.open_split` reads; single-label).

    `max_images`: an evenly spaced subset of that many images."""
    pre = _preprocessing(model)
    columns = {"image_column": image_column, "label_column": label_column}
    split = open_split(data, transform=eval_transform(pre), **columns)
    if split.multi_label:
        raise ValueError(f"{split.origin} has several labels per image; calibration takes single-label images")
    card = network_card(model)
    outputs = card.num_classes if card is not None else len(split.classes)
    names = card.class_names if card is not None else None
    cmap = map_classes(split.classes, outputs, model=card.model_name if card else "the model", class_names=names)
    images: Dataset = split
    if max_images is not None and max_images < len(split):
        step = len(split) / max_images
        images = Subset(split, [int(i * step) for i in range(max_images)])
    logits, targets, skipped = _run(model, images, batch_size=batch_size, workers=workers, device=device)
    index = torch.tensor(cmap.target_index, dtype=torch.long)
    return Logits(logits[:, cmap.offset :], index[targets], skipped)


def folder_logits(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device = "cpu",
) -> Logits:
    """The logits of every image below `folder` (any layout, recursively, by extension), unlabelled."""
    files = files_under(folder, IMG_EXTENSIONS) if Path(folder).is_dir() else []
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMG_EXTENSIONS)}); name a folder of images")
    images = _Files(files, eval_transform(_preprocessing(model)))
    logits, _, skipped = _run(model, images, batch_size=batch_size, workers=workers, device=device)
    card = network_card(model)
    background = logits.shape[1] == 1001 and (card is None or card.class_names is None)  # as classmap.py drops it
    return Logits(logits[:, int(background) :], None, skipped)


def _preprocessing(model: nn.Module) -> Preprocessing:
    card = network_card(model)
    return card.preprocessing if card is not None else Preprocessing()


def _run(
    model: nn.Module, images: Dataset, *, batch_size: int, workers: int, device: str | torch.device
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every readable image of `images` through `model` (eval mode, restored after): logits, targets, skipped."""
    loader = DataLoader(images, batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping_bad)
    was_training = model.training
    model.eval()
    logits, targets, skipped = [], [], 0
    try:
        with torch.inference_mode():
            for batch in loader:
                skipped += batch.skipped
                if len(batch.targets):
                    logits.append(model(batch.images.to(device)).float().cpu())
                    targets.append(batch.targets)
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("no readable image to score; check the images given")
    return torch.cat(logits), torch.cat(targets), skipped


class _Files(Dataset):
    """Image files as (prepared image, 0), or None where unreadable (counted by collate_skipping_bad)."""

    def __init__(self, files: list[Path], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        try:
            image: Image.Image = read_image(self.files[i])
        except UNREADABLE:
            return None
        return self.transform(image), 0
