"""Speed of the two halves of an evaluation alone: data loading (decode + views), and plain inference.

They tell which half limits `evaluate`: `measure_loading` runs its loader (evaluation.views) with no
network, `measure_inference` its networks on random input.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet.devices import default_device, sync
from inceptionnet.evaluation.scores import finite
from inceptionnet.evaluation.views import (
    DEFAULT_WORKERS,
    MultiViewTransform,
    images_per_batch,
    view_config,
    view_dataset,
    view_loader,
)
from inceptionnet.export.runtimes import network_card
from inceptionnet.models import Preprocessing


@dataclass(frozen=True)
class Throughput:
    """How fast one half of an evaluation ran: images and views per second, unreadable images counted."""

    what: str  # "data loading" or "inference"
    crops: int
    images: int
    views: int
    seconds: float
    skipped: int = 0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds if self.seconds > 0 else math.nan

    def describe(self) -> str:
        return (
            f"{self.what}: {self.images} images, {self.views} views ({self.crops} per image) in {self.seconds:.2f} s: "
            f"{self.images_per_s:.2f} images/s, {self.views_per_s:.1f} views/s"
            + (f", {self.skipped} unreadable" if self.skipped else "")
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(images_per_s=finite(self.images_per_s), views_per_s=finite(self.views_per_s))
        return d


def measure_loading(
    data_dir: str | Path,
    *,
    preprocessing: Preprocessing | Sequence[Preprocessing] | None = None,
    crops: int = 1,
    batch_size: int = 32,
    workers: int = DEFAULT_WORKERS,
    input_size: int | None = None,
    max_images: int | None = None,
) -> Throughput:
    """Decode and cut views exactly as `evaluate` does, with no network: is the loader fast enough?

    The time runs from asking for the first batch (worker start-up included) to the last batch.
    """
    if preprocessing is None:
        preprocessing = Preprocessing()
    pres = [preprocessing] if isinstance(preprocessing, Preprocessing) else list(preprocessing)
    if input_size is not None:
        pres = [dataclasses.replace(p, input_size=input_size) for p in pres]
    configs = list(dict.fromkeys(view_config(p, crops) for p in pres))
    dataset, _ = view_dataset(data_dir, MultiViewTransform(crops, configs), max_images)
    loader = view_loader(
        dataset, images_per_batch=images_per_batch(batch_size, crops), workers=workers, pin_memory=False
    )
    images = skipped = views = 0
    start = time.perf_counter()
    for batch in loader:
        images += batch.targets.numel()
        skipped += batch.skipped
        views += sum(v.shape[0] * v.shape[1] for v in batch.views)
    return Throughput("data loading", crops, images, views, time.perf_counter() - start, skipped)


def measure_inference(
    model: nn.Module,
    *,
    crops: int = 1,
    images: int = 8,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    input_size: int | None = None,
) -> Throughput:
    """Plain inference on random inputs: `images` x `crops` views through `model`, `batch_size` at a time.

    The yardstick for `evaluate`: softmax included, no data loading, no view cutting. One warm-up
    batch runs first and is not timed.
    """
    dev = default_device(device)
    card = network_card(model)
    size = input_size or (card.preprocessing if card is not None else Preprocessing()).input_size
    total = images * crops
    x = torch.randn(min(batch_size, total), 3, size, size, device=dev)
    was_training = model.training
    model.to(dev).eval()
    try:
        with torch.inference_mode():
            model(x).softmax(dim=-1)
            sync(dev)
            start = time.perf_counter()
            done = 0
            while done < total:
                n = min(batch_size, total - done)
                model(x[:n]).float().softmax(dim=-1)
                done += n
            sync(dev)
            seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
    return Throughput("inference", crops, images, total, seconds)
