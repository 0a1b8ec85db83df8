"""Evaluation's views: decode each image once, cut the views of every preprocessing the networks need, and
average a network's probabilities over an image's views (`view_probabilities`).

`evaluate` and `measure_loading` share this loader (`view_batches`): DataLoader workers decode an image of the split,
cut its 1, 10, 12 or 144 views (`inceptionnet.data.crops`) once per distinct `ViewConfig`, and hand
them over as uint8 tensors; scaling and normalisation happen per network, just before its forward
pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms.v2 import functional as F

from inceptionnet.data import SourceError, collate_skipping_bad, open_split
from inceptionnet.data.crops import CROP_SCHEMES, render_views, views_for
from inceptionnet.evaluation.sharding import rank_share
from inceptionnet.models import Preprocessing
from inceptionnet.models.outputs import scaled_logits
from inceptionnet.ranks import Ranks

DEFAULT_WORKERS = min(8, os.cpu_count() or 1)  # data-loading processes of an evaluation


@dataclass(frozen=True)
class ViewConfig:
    """What decides the pixels of a view (mean and std are applied later, per network)."""

    input_size: int
    crop_fraction: float
    interpolation: str


class MultiViewTransform:
    """PIL image -> one uint8 (views, C, S, S) tensor per ViewConfig (one decode serves them all)."""

    def __init__(self, crops: int, configs: Sequence[ViewConfig]) -> None:
        if crops not in CROP_SCHEMES:
            raise ValueError(f"crops must be one of {CROP_SCHEMES}, got {crops}")
        self.crops = crops
        self.configs = tuple(configs)

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, ...]:
        pixels = F.pil_to_tensor(image)
        h, w = pixels.shape[-2:]
        out = []
        for c in self.configs:
            views = views_for(self.crops, h, w, input_size=c.input_size, crop_fraction=c.crop_fraction)
            out.append(render_views(pixels, views, input_size=c.input_size, interpolation=c.interpolation))
        return tuple(out)


@dataclass
class ViewBatch:
    """One loader batch: the views of its readable images per ViewConfig, their classes, the unreadable count."""

    views: tuple[torch.Tensor, ...]  # per ViewConfig: uint8 (N, views, C, S, S)
    targets: torch.Tensor  # (N,) folder class indices
    skipped: int  # unreadable images dropped from this batch
    kept: tuple[int, ...] | None = None  # position in the batch of each readable image; None: all, in order

    def pin_memory(self) -> ViewBatch:
        """The batch in page-locked memory, as DataLoader(pin_memory=True) asks of a batch type (`data.Batch`)."""
        views = tuple(v.pin_memory() for v in self.views)
        return ViewBatch(views, self.targets.pin_memory(), self.skipped, self.kept)

    def positions(self) -> list[int]:
        """Where each readable image sat in the batch, so a per-image result finds its image (skips included)."""
        return list(range(len(self.targets))) if self.kept is None else list(self.kept)


def collate_views(samples: list[tuple[tuple[torch.Tensor, ...], int] | None]) -> ViewBatch:
    """`collate_skipping_bad` for samples that carry one view tensor per ViewConfig."""
    width = next((len(s[0]) for s in samples if s is not None), 0)
    if width == 0:
        return ViewBatch((), torch.empty(0, dtype=torch.long), len(samples))
    parts = [collate_skipping_bad([None if s is None else (s[0][i], s[1]) for s in samples]) for i in range(width)]
    kept = tuple(i for i, s in enumerate(samples) if s is not None)
    return ViewBatch(tuple(p.images for p in parts), parts[0].targets, parts[0].skipped, kept)


def view_dataset(
    data_dir: str | Path,
    transform: MultiViewTransform,
    max_images: int | None,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    ranks: Ranks | None = None,
    multi_label: bool = False,
) -> tuple[Dataset, list[str]]:
    """The split at `data_dir` (any data source) cut into views by `transform`, and its class names.

    `max_images` keeps an evenly spaced subset of that many images; None keeps them all.
    `image_column` / `label_column` choose a Hugging Face dataset's columns (`data.open_split`). `ranks`: under
    torchrun, this rank's share of them (`sharding.rank_share`). `multi_label`: each target a multi-hot row
    over the classes (a multi-label network's evaluation); otherwise an image with several labels is refused.
    """
    folder = open_split(data_dir, transform=transform, image_column=image_column, label_column=label_column)
    folder.give_multi_hot(multi_label)
    if folder.multi_label and not multi_label:
        raise SourceError(
            f"{folder.origin} has several labels per image; top-1 / top-5 take one label per image: "
            "choose a single-label column (--label-column)"
        )
    if max_images is None or max_images >= len(folder):
        return rank_share(folder, ranks), folder.classes
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    # Evenly spaced over the (class-sorted) samples, so a quick check still sees every part of the folder.
    step = len(folder) / max_images
    return rank_share(Subset(folder, [int(i * step) for i in range(max_images)]), ranks), folder.classes


def view_loader(dataset: Dataset, *, images_per_batch: int, workers: int, pin_memory: bool) -> DataLoader:
    """The images of a `view_dataset` in folder order, `images_per_batch` at a time, as `ViewBatch`es."""
    return DataLoader(
        dataset,
        batch_size=images_per_batch,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_views,
        pin_memory=pin_memory,
    )


def view_batches(
    data_dir: str | Path,
    pres: Sequence[Preprocessing],
    *,
    crops: int,
    batch_size: int,
    workers: int,
    max_images: int | None,
    pin_memory: bool,
    image_column: str | None = None,
    label_column: str | None = None,
    ranks: Ranks | None = None,
    multi_label: bool = False,
) -> tuple[DataLoader, list[ViewConfig], list[str]]:
    """The loader of an evaluation of networks prepared by `pres`: its batches, the distinct view
    configurations they carry (one view tensor each, in this order) and the folder's classes
    (`multi_label`: view_dataset's)."""
    configs = list(dict.fromkeys(view_config(p, crops) for p in pres))
    columns = {"image_column": image_column, "label_column": label_column}
    transform = MultiViewTransform(crops, configs)
    dataset, classes = view_dataset(data_dir, transform, max_images, **columns, ranks=ranks, multi_label=multi_label)
    loader = view_loader(
        dataset, images_per_batch=images_per_batch(batch_size, crops), workers=workers, pin_memory=pin_memory
    )
    return loader, configs, classes


def images_per_batch(batch_size: int, views: int) -> int:
    """Images per loader batch: enough to fill about one forward batch of `batch_size` views, at least one."""
    return max(1, batch_size // views)


def view_config(pre: Preprocessing, crops: int) -> ViewConfig:
    """What decides the pixels of a network's views under scheme `crops`.

    The 144-view scales follow from the input size alone, so networks that differ only in crop
    fraction share their views (the crop fraction is set to 1.0).
    """
    return ViewConfig(pre.input_size, 1.0 if crops == 144 else pre.crop_fraction, pre.interpolation)


def view_probabilities(
    model: nn.Module,
    views: torch.Tensor,
    *,
    preprocessing: Preprocessing,
    offset: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    multi_label: bool = False,
    temperature: float | None = None,
) -> torch.Tensor:
    """uint8 views (N, V, C, S, S) -> (N, classes) softmax probabilities averaged over each image's V views
    (`multi_label`: a sigmoid per class; `temperature`: the softmax of the logits divided by it, the card's).

    The views go through `model` `batch_size` at a time, scaled to [0, 1] and normalised with the
    preprocessing's mean and std; the first `offset` outputs (TF's background class) are dropped
    before the softmax. Probabilities, not logits, are averaged, as GoogLeNet and the paper do.
    """
    how = {"preprocessing": preprocessing, "offset": offset, "batch_size": batch_size, "device": device}
    return view_probability_pair(model, views, **how, multi_label=multi_label, temperature=temperature)[0]


def view_probability_pair(
    model: nn.Module,
    views: torch.Tensor,
    *,
    preprocessing: Preprocessing,
    offset: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    multi_label: bool = False,
    temperature: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`view_probabilities`, and the same without the temperature from the same forward passes (None without
    one): the report's calibration before and after."""
    n_images, n_views = views.shape[:2]
    mean, std = list(preprocessing.mean), list(preprocessing.std)
    probs, raw = [], []
    for chunk in views.flatten(0, 1).split(batch_size):
        x = F.to_dtype(chunk.to(device, non_blocking=True), torch.float32, scale=True)
        logits = model(F.normalize(x, mean=mean, std=std)).float()
        kept = logits[:, offset:]
        probs.append(kept.sigmoid() if multi_label else scaled_logits(kept, temperature).softmax(dim=-1))
        if temperature is not None and not multi_label:
            raw.append(kept.softmax(dim=-1))
    average = [torch.cat(p).view(n_images, n_views, -1).mean(dim=1).cpu() for p in (probs, raw) if p]
    return average[0], average[1] if len(average) > 1 else None
