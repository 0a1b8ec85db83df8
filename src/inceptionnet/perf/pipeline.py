"""Speed of the JPEG training input: the project's training loader on the CPU cores, and JPEG decoding
plus the same augmentation as tensors on the device; and whether the loader keeps up with training.

- `make_jpegs` writes ImageNet-like photos (500 x 375, about 100 KB at quality 90: smooth colours under
  grain, so the files carry as much entropy-coded data as real photos, which sets the decoding cost);
- `measure_loader` runs `data.train_loader` over the transform `train` builds
  (`training.inputs.training_transform`: decode with PIL, random crop, flip, colour distortion,
  normalisation), with its collation and pinning, as training does;
- `measure_device_decode` reads the files' bytes, decodes them with `torchvision.io.decode_jpeg` on the
  device and runs the same transform there, image by image;
- `loader_verdicts` compares the loader with each network's training rate and says what would fix it.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from inceptionnet.data import open_split, train_loader
from inceptionnet.perf.measure import timed

PHOTO_SIZE = (500, 375)  # width x height of a typical ImageNet photo
JPEG_SUFFIXES = (".jpg", ".jpeg")


def make_jpegs(folder: Path, count: int, *, size: tuple[int, int] = PHOTO_SIZE, seed: int = 0) -> list[Path]:
    """Write `count` photo-like JPEGs into `folder` (created): random smooth colours under grain."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    grain = rng.standard_normal((h + 64, w + 64, 3), dtype=np.float32) * 20  # cut at a random offset per image
    paths = []
    for i in range(count):
        colours = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
        dy, dx = rng.integers(0, 64, 2)
        pixels = np.asarray(colours, dtype=np.float32) + grain[dy : dy + h, dx : dx + w]
        path = folder / f"photo{i:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def link_jpegs(source: Path, folder: Path, count: int) -> list[Path]:
    """Links in `folder` to the first `count` JPEGs under `source` (any depth, sorted), as one class folder."""
    found = sorted(p for p in source.rglob("*") if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())[:count]
    if not found:
        raise ValueError(f"no JPEG files (.jpg, .jpeg) under {source}")
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for i, path in enumerate(found):
        link = folder / f"image{i:05d}{path.suffix.lower()}"
        link.symlink_to(path.resolve())
        links.append(link)
    return links


class Repeated(Dataset):
    """`dataset` read round and round up to `length` items: a long epoch from a few hundred files."""

    def __init__(self, dataset: Dataset, length: int) -> None:
        self.dataset = dataset
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index % len(self.dataset)]  # type: ignore[arg-type]


@dataclass(frozen=True)
class LoaderSpeed:
    """The training loader in steady state (each worker's first batch, its start-up, left out)."""

    images_per_s: float
    per_worker_images_per_s: float
    images: int
    seconds: float
    startup_s: float
    workers: int
    batch_size: int
    files: int
    unreadable: int
    pinned: bool  # batches copied to page-locked memory, as training does on a CUDA machine


@dataclass(frozen=True)
class DecodeSpeed:
    """JPEG decoding and the training transform on the device, and the CPU time the process spent meanwhile."""

    images_per_s: float
    images: int
    seconds: float
    cpu_s_per_image: float
    batch_size: int
    device: str
    files: int


@dataclass(frozen=True)
class Verdict:
    """Whether the loader keeps up with one network's best training rate, and what would fix it."""

    model: str
    training_images_per_s: float
    loader_images_per_s: float
    bottleneck: bool
    workers_needed: int
    device_decode_share: float | None  # of the GPU's time decoding would take at the training rate
    text: str


@dataclass(frozen=True)
class SteadyCount:
    """What a loader delivered in steady state: after its start-up batches, for a given time."""

    images: int  # counted after the start-up batches
    seconds: float  # from the end of the start-up batches to the last counted batch
    startup_s: float  # from asking for the first batch to the end of the start-up batches

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def steady_count(batches: Iterable[Any], count: Callable[[Any], int], *, skip: int, seconds: float) -> SteadyCount:
    """Images of `batches` (`count(batch)` each) after the first `skip` (the workers' start-up: one batch
    each), counted for `seconds`: the one steady-state timer of `bench --mode loader` and the GPU check.
    `count` sees every batch, the start-up ones included (to count what they skipped)."""
    skip = max(1, skip)  # a loader without workers starts up in its first batch
    counted, begin, start = 0, time.perf_counter(), math.nan
    iterator = iter(batches)
    try:
        for i, batch in enumerate(iterator):
            images = count(batch)
            if i == skip - 1:
                start = time.perf_counter()
            elif i >= skip:
                counted += images
                if time.perf_counter() - start > seconds:
                    break
    finally:
        del iterator  # shuts the workers down
    if math.isnan(start) or counted == 0:
        raise RuntimeError(f"the loader delivered no batch after its {skip} start-up batches; give it more images")
    return SteadyCount(counted, time.perf_counter() - start, start - begin)


def measure_loader(
    root: Path,
    *,
    transform: Callable[[Image.Image], torch.Tensor],
    batch_size: int,
    workers: int,
    seconds: float,
    max_batches: int,
) -> LoaderSpeed:
    """Images/s of the training loader over `root/<class>/*.jpg` with `transform`, in steady state.

    The first batch of each worker (its start-up) is not counted; counting stops after `seconds` or
    `max_batches` counted batches.
    """
    images = open_split(root, transform=transform)
    skip = max(1, workers)
    dataset = Repeated(images, batch_size * (skip + max_batches))
    loader, sampler, samples = train_loader(dataset, batch_size=batch_size, num_workers=workers, seed=0)
    sampler.set_epoch(0)
    samples.set_epoch(0)
    skipped = 0

    def counted(batch: Any) -> int:
        nonlocal skipped
        skipped += batch.skipped
        return len(batch.targets)

    steady = steady_count(loader, counted, skip=skip, seconds=seconds)
    rate = steady.images_per_s
    return LoaderSpeed(
        rate,
        rate / skip,
        steady.images,
        steady.seconds,
        steady.startup_s,
        workers,
        batch_size,
        len(images),
        skipped,
        loader.pin_memory,
    )


@contextlib.contextmanager
def _torchvision_io() -> Iterator[None]:
    """torchvision.io's decoders, without the deprecation warning of torchvision >= 0.29 (they still work;
    TorchCodec is to replace them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        yield


def measure_device_decode(
    paths: list[Path],
    *,
    device: torch.device,
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    seconds: float,
    max_batches: int,
) -> DecodeSpeed:
    """Images/s of decoding the JPEGs on `device` (torchvision.io.decode_jpeg) and transforming them there.

    The files are read into memory first (reading bytes is a small part of the work); one batch warms
    the decoder up and is not counted. Also reports the process's CPU seconds per image meanwhile.
    """
    with _torchvision_io():
        encoded = [read_file(str(p)) for p in paths]

    def run(i: int) -> None:
        batch = [encoded[(i * batch_size + j) % len(encoded)] for j in range(batch_size)]
        with _torchvision_io():
            decoded = decode_jpeg(batch, mode=ImageReadMode.RGB, device=device)
        torch.stack([transform(image) for image in decoded])

    timed(lambda: run(0), device)
    cpu, elapsed, done = time.process_time(), 0.0, 0
    while done < max_batches and (done == 0 or elapsed < seconds):
        done += 1
        elapsed += timed(partial(run, done), device)
    images = done * batch_size
    cpu_per_image = (time.process_time() - cpu) / images
    return DecodeSpeed(images / elapsed, images, elapsed, cpu_per_image, batch_size, str(device), len(paths))


def _rate(images_per_s: float) -> str:
    return f"{images_per_s:.0f}" if images_per_s >= 10 else f"{images_per_s:.2g}"


def loader_verdicts(
    loader: LoaderSpeed, training: dict[str, float], *, device_decode: DecodeSpeed | None
) -> list[Verdict]:
    """For each network's best training rate (images/s): does the loader keep up, and if not, what would."""
    rate, per_worker = loader.images_per_s, loader.per_worker_images_per_s
    verdicts = []
    for model, train in training.items():
        slow, need = rate < train, math.ceil(train / per_worker)
        text = (
            f"{model}: the loader gives {_rate(rate)} images/s with {loader.workers} worker(s), training takes "
            f"{_rate(train)}: data loading {'IS' if slow else 'is not'} the bottleneck"
        )
        share = None
        if slow:
            text += f". Fix: about {need} CPU workers at the measured {_rate(per_worker)} images/s each"
            if device_decode is not None:
                decode = device_decode.images_per_s
                share = train / decode
                text += (
                    f", or decode and augment on the GPU (torchvision.io.decode_jpeg(device='cuda'): {_rate(decode)} "
                    f"images/s, about {share:.0%} of the GPU's time at the training rate)"
                )
        verdicts.append(Verdict(model, train, rate, slow, need, share, text))
    return verdicts
