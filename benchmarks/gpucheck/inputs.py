"""The GPU check's input-pipeline sections: the training loader on the CPU cores, JPEG decoding on the
device, and whether the loader keeps up with each network's training rate (perf/pipeline.py measures).

Both time the transform `inceptionnet train` builds for the first network (training.inputs.
training_transform with the recipe's defaults, TrainConfig), at the check's input size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpucheck.state import Check
from inceptionnet.models import get_entry
from inceptionnet.perf import pipeline
from inceptionnet.perf.pipeline import Verdict
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.inputs import training_transform

PHOTOS = "photos"  # the one class folder of the loader's images, inside the check's temporary folder


def transform(check: Check) -> Callable[..., Any]:
    """The training transform of the first network at the check's input size, as a default run sets it up."""
    pre = get_entry(check.cfg.models[0]).preprocessing
    return training_transform(TrainConfig(), pre, input_size=check.cfg.input_size)


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


def loader(check: Check, folder: Path) -> None:
    """Images/s of the training loader (data.train_loader: one worker per core, pinned batches on CUDA)."""
    cfg = check.cfg
    files = jpegs(check, folder)
    check.result.notes.append(f"input pipeline: {cfg.images or f'{len(files)} generated photos'}")
    check.result.loader = pipeline.measure_loader(
        folder,
        transform=transform(check),
        batch_size=cfg.loader_batch,
        workers=cfg.workers,
        seconds=cfg.loader_seconds,
        max_batches=cfg.loader_batches,
    )


def device_decode(check: Check, folder: Path) -> None:
    """Images/s of decoding the same JPEGs on the device (torchvision.io.decode_jpeg) and transforming them there."""
    cfg = check.cfg
    check.result.decode = pipeline.measure_device_decode(
        jpegs(check, folder),
        device=check.device,
        transform=transform(check),
        batch_size=cfg.decode_batch,
        seconds=cfg.decode_seconds,
        max_batches=cfg.loader_batches,
    )


def verdicts(check: Check) -> list[Verdict]:
    """Does the loader keep up with our fastest training step of each network (eager or compiled)?"""
    if check.result.loader is None:
        return []
    training: dict[str, float] = {}
    for timing in check.result.networks.values():
        if timing.what == "training" and "ours" in timing.images_per_s:
            training[timing.model] = max(training.get(timing.model, 0.0), timing.images_per_s["ours"])
    return pipeline.loader_verdicts(check.result.loader, training, device_decode=check.result.decode)
