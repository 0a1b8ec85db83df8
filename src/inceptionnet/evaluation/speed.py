"""Speed of an evaluation's data side alone: decoding and cutting views with no network.

It tells whether the loader limits `evaluate`: `measure_loading` runs the evaluation's own loader
(`views.view_batches`) and nothing else. The network side alone is `inceptionnet bench`'s job (the
network on its engine, timed step by step); an evaluation reports the wall time of its own run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inceptionnet.evaluation.scores import finite
from inceptionnet.evaluation.views import DEFAULT_WORKERS, view_batches
from inceptionnet.models import Preprocessing


@dataclass(frozen=True)
class Throughput:
    """How fast the data side of an evaluation ran: images and views per second, unreadable images counted."""

    what: str  # "data loading"
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
    image_column: str | None = None,
    label_column: str | None = None,
) -> Throughput:
    """Decode and cut views exactly as `evaluate` does, with no network: is the loader fast enough?

    The time runs from asking for the first batch (worker start-up included) to the last batch.
    `image_column` / `label_column` choose a Hugging Face dataset's columns.
    """
    if preprocessing is None:
        preprocessing = Preprocessing()
    pres = [preprocessing] if isinstance(preprocessing, Preprocessing) else list(preprocessing)
    if input_size is not None:
        pres = [dataclasses.replace(p, input_size=input_size) for p in pres]
    columns = {"image_column": image_column, "label_column": label_column}
    load = {"batch_size": batch_size, "workers": workers, "max_images": max_images, "pin_memory": False}
    loader, _, _ = view_batches(data_dir, pres, crops=crops, **load, **columns)
    images = skipped = views = 0
    start = time.perf_counter()
    for batch in loader:
        images += batch.targets.numel()
        skipped += batch.skipped
        views += sum(v.shape[0] * v.shape[1] for v in batch.views)
    return Throughput("data loading", crops, images, views, time.perf_counter() - start, skipped)
