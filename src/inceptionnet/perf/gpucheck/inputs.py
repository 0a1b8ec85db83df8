"""The GPU check's input-pipeline sections: the training loader on the CPU cores, JPEG decoding on the
device, and whether the loader keeps up with each network's training rate (perf/pipeline.py measures)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from inceptionnet.models import Preprocessing, get_entry
from inceptionnet.perf import pipeline
from inceptionnet.perf.gpucheck.state import Check
from inceptionnet.training.config import TrainConfig

PHOTOS = "photos"  # the one class folder of the loader's images, inside the check's temporary folder


def augmentation() -> dict[str, Any]:
    """train_transform's options as the training recipe sets them by default (TrainConfig)."""
    recipe = TrainConfig()
    return {
        "min_area": recipe.min_area,
        "color_distort": recipe.color_distort,
        "interpolation": recipe.train_interpolation,
    }


def _preprocessing(check: Check) -> Preprocessing:
    """The first network's preprocessing at the check's input size."""
    return dataclasses.replace(get_entry(check.cfg.models[0]).preprocessing, input_size=check.cfg.input_size)


def jpegs(check: Check, folder: Path) -> list[Path]:
    """The JPEGs of the input sections in `folder`/photos: links to --images, else generated photos (once)."""
    photos = folder / PHOTOS
    if not photos.is_dir():
        cfg = check.cfg
        if cfg.images is not None:
            pipeline.link_jpegs(Path(cfg.images), photos, cfg.num_images)
        else:
            pipeline.make_jpegs(photos, cfg.num_images)
    return sorted(photos.iterdir())


def loader(check: Check, folder: Path, detail: dict[str, Any]) -> None:
    """Images/s of the training loader (data.train_loader, data.train_transform) with one worker per core."""
    cfg = check.cfg
    files = jpegs(check, folder)
    detail.update(input_size=cfg.input_size, images=cfg.images or f"{len(files)} generated photos", files=len(files))
    detail["loader"] = pipeline.measure_loader(
        folder,
        pre=_preprocessing(check),
        augment=augmentation(),
        batch_size=cfg.loader_batch,
        workers=cfg.workers,
        seconds=cfg.loader_seconds,
        max_batches=cfg.loader_batches,
    )


def device_decode(check: Check, folder: Path, detail: dict[str, Any]) -> None:
    """Images/s of decoding the same JPEGs on the device (torchvision.io.decode_jpeg) and augmenting there."""
    cfg = check.cfg
    detail.update(input_size=cfg.input_size)
    detail["decode"] = pipeline.measure_device_decode(
        jpegs(check, folder),
        device=check.device,
        pre=_preprocessing(check),
        augment=augmentation(),
        batch_size=cfg.decode_batch,
        seconds=cfg.decode_seconds,
        max_batches=cfg.loader_batches,
    )


def verdicts(check: Check) -> list[dict[str, Any]]:
    """Does the loader keep up with our fastest training step of each network (eager or compiled)?"""
    details = check.report["details"]
    measured = details.get("JPEG training loader", {}).get("loader")
    if measured is None:
        return []
    training: dict[str, float] = {}
    for detail in details.values():
        if detail.get("what") == "training" and "ours" in detail.get("images_per_s", {}):
            model = detail["model"]
            training[model] = max(training.get(model, 0.0), detail["images_per_s"]["ours"])
    decode = details.get("JPEG decode on the device", {}).get("decode")
    return pipeline.loader_verdicts(measured, training, device_decode=decode)
