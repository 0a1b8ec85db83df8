"""Calibration images for int8 quantization: which images, read with the network's own evaluation preprocessing.

A calibration set is a split of any data source `open_split` reads (a metadata folder, ...), a folder
of images in any layout (searched recursively; a training folder `train/<class>/*` is typical, class
folders are not needed), or a list of image files. `read_calibration` draws up to N readable images
in a seeded random order, so that a class-sorted split gives a sample of every class, and skips (and
counts) the images that cannot be decoded. `CalibrationBatches` hands them to ONNX Runtime's
calibrator a few at a time.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inceptionnet.data.images import UNREADABLE, files_under, read_image
from inceptionnet.data.sources import ImageSource, open_split, source_kind
from inceptionnet.data.transforms import eval_transform

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CALIBRATION_BATCH = 8
# How the range of each activation is chosen from the calibration images (ONNX Runtime's CalibrationMethod):
# "average": the mean over batches of CALIBRATION_BATCH images of each batch's min and max (MinMax with
# CalibMovingAverage); "minmax": the extremes over all images; "entropy" and "percentile" (99.999%): histograms.
METHODS = ("average", "minmax", "entropy", "percentile")
DEFAULT_METHOD = "average"


CalibrationSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def calibration_set(source: CalibrationSource) -> ImageSource | list[Path]:
    """The calibration images `source` names: the split of a data source (its own images, labels unused), or the
    image files of a plain folder (any layout) or list, in a fixed order."""
    if isinstance(source, (str, os.PathLike)) and source_kind(source) != "folder":
        return open_split(source)
    return calibration_files(source)


def calibration_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The image files of a calibration folder (searched recursively, by suffix) or list, in a fixed order."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise ValueError(f"calibration folder {folder} does not exist; pass a folder of images (any layout)")
        files = files_under(folder, IMAGE_SUFFIXES)
        where = f"calibration folder {folder}"
    else:
        files = [Path(p) for p in source]
        where = "the calibration list"
    if not files:
        raise ValueError(
            f"{where} holds no images ({', '.join(IMAGE_SUFFIXES)}); pass a few hundred images like those the "
            "network will see, e.g. its training folder"
        )
    return files


def read_calibration(
    files: ImageSource | Sequence[Path],
    model: nn.Module,
    *,
    images: int,
    input_size: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """Up to `images` readable images of `files` (a `calibration_set`), drawn in a seeded random order, with the
    network's evaluation preprocessing, as one (N, 3, H, W) batch; and how many unreadable ones were skipped."""
    if images < 1:
        raise ValueError(f"--images must be at least 1, got {images}")
    transform = eval_transform(model.preprocessing, input_size=input_size)
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)  # a sample of every class of a class-sorted folder
    kept: list[torch.Tensor] = []
    skipped = 0
    for i in order:
        if len(kept) == images:
            break
        try:
            kept.append(transform(files.load(i) if isinstance(files, ImageSource) else read_image(files[i])))
        except UNREADABLE:
            skipped += 1
    if not kept:
        raise ValueError(f"none of the {len(files)} calibration images could be read; pass a folder of readable images")
    return torch.stack(kept), skipped


def ort_calibration(method: str) -> tuple[Any, dict[str, Any]]:
    """ONNX Runtime's CalibrationMethod and quantize_static extra options for one of METHODS."""
    from onnxruntime.quantization import CalibrationMethod

    return {
        "average": (CalibrationMethod.MinMax, {"CalibMovingAverage": True}),
        "minmax": (CalibrationMethod.MinMax, {}),
        # the histogram methods hold every activation of the batches they see: one batch at a time
        "entropy": (CalibrationMethod.Entropy, {"CalibStridedMinMax": 1}),
        "percentile": (CalibrationMethod.Percentile, {"CalibStridedMinMax": 1}),
    }[method]


class CalibrationBatches:
    """ONNX Runtime's CalibrationDataReader protocol (get_next, iteration, len and set_range for strided
    calibration) over a batch of images, CALIBRATION_BATCH at a time."""

    def __init__(self, images: torch.Tensor, input_name: str) -> None:
        self.batches = [b.numpy() for b in images.split(CALIBRATION_BATCH)]
        self.name = input_name
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.pending = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.pending, None)
        return None if batch is None else {self.name: batch}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (inputs := self.get_next()) is not None:
            yield inputs
