"""Speed of the JPEG training input: the project's training loader on the CPU cores, and JPEG decoding
plus the same augmentation as tensors on the device; and whether the loader keeps up with training.

- `make_jpegs` writes ImageNet-like photos (500 x 375, about 100 KB at quality 90: smooth colours under
  grain, so the files carry as much entropy-coded data as real photos, which sets the decoding cost);
- `measure_loader` runs `data.train_loader` over `data.train_transform` (decode with PIL, random crop,
  flip, colour distortion, normalisation, collation, pinning), as training does;
- `measure_device_decode` reads the files' bytes, decodes them with `torchvision.io.decode_jpeg` on the
  device and augments the batch there (`augment_batch`);
- `loader_verdicts` compares the loader with each network's training rate and says what would fix it.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T_v1
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from inceptionnet.data import COLOR_DISTORTIONS, ImageFolder, train_loader, train_transform
from inceptionnet.devices import sync
from inceptionnet.models import Preprocessing

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


def measure_loader(
    root: Path,
    *,
    pre: Preprocessing,
    augment: dict[str, Any],
    batch_size: int,
    workers: int,
    seconds: float,
    max_batches: int,
) -> dict[str, Any]:
    """Images/s of the training loader over `root/<class>/*.jpg`, in steady state.

    The first batch of each worker (its start-up) is not counted; counting stops after `seconds` or
    `max_batches` counted batches.
    """
    images = ImageFolder(root, transform=train_transform(pre, **augment))
    skip = max(1, workers)
    dataset = Repeated(images, batch_size * (skip + max_batches))
    loader, sampler, samples = train_loader(dataset, batch_size=batch_size, num_workers=workers, seed=0)
    sampler.set_epoch(0)
    samples.set_epoch(0)
    counted = skipped = 0
    begin = time.perf_counter()
    start = startup = math.nan
    batches = iter(loader)
    try:
        for i, batch in enumerate(batches):
            skipped += batch.skipped
            if i == skip - 1:
                start = time.perf_counter()
                startup = start - begin
            elif i >= skip:
                counted += len(batch.targets)
                if time.perf_counter() - start > seconds:
                    break
    finally:
        del batches  # shuts the workers down
    elapsed = time.perf_counter() - start
    if counted == 0:
        raise RuntimeError(f"the loader delivered no batch after its {skip} start-up batches; raise max_batches")
    rate = counted / elapsed
    return {
        "images_per_s": rate,
        "per_worker_images_per_s": rate / max(1, workers),
        "images": counted,
        "seconds": elapsed,
        "startup_s": startup,
        "workers": workers,
        "batch_size": batch_size,
        "files": len(images),
        "unreadable": skipped,
    }


def augment_batch(
    images: list[torch.Tensor], *, pre: Preprocessing, min_area: float, color_distort: str
) -> torch.Tensor:
    """`train_transform`'s augmentation on decoded uint8 images (C x H x W, any device), as one batch:
    random crop of `min_area`-100% area and aspect 3/4-4/3 resized (bilinear) to the input size, flip,
    brightness / contrast / saturation jitter (in a fixed order; hue is not applied), normalisation."""
    size = pre.input_size
    crops = []
    for image in images:
        top, left, h, w = T_v1.RandomResizedCrop.get_params(image, scale=(min_area, 1.0), ratio=(3 / 4, 4 / 3))
        crop = image[None, :, top : top + h, left : left + w].float()
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    x = torch.cat(crops).div_(255)
    n, dev = x.shape[0], x.device

    def factor(amount: float) -> torch.Tensor:  # uniform in [1 - amount, 1 + amount], one per image
        return 1 + (torch.rand(n, 1, 1, 1, device=dev) * 2 - 1) * amount

    x = torch.where(torch.rand(n, 1, 1, 1, device=dev) < 0.5, x.flip(-1), x)
    jitter = COLOR_DISTORTIONS[color_distort]
    if "brightness" in jitter:
        x = x * factor(jitter["brightness"])
    gray = (x * torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if "contrast" in jitter:
        level = gray.mean(dim=(2, 3), keepdim=True)
        x = level + factor(jitter["contrast"]) * (x - level)
    if "saturation" in jitter:
        x = gray + factor(jitter["saturation"]) * (x - gray)
    mean, std = (torch.tensor(v, device=dev).view(1, 3, 1, 1) for v in (pre.mean, pre.std))
    return ((x.clamp_(0, 1) - mean) / std).contiguous(memory_format=torch.channels_last)


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
    pre: Preprocessing,
    augment: dict[str, Any],
    batch_size: int,
    seconds: float,
    max_batches: int,
) -> dict[str, Any]:
    """Images/s of decoding the JPEGs on `device` (torchvision.io.decode_jpeg) and augmenting them there.

    The files are read into memory first (reading bytes is a small part of the work); one batch warms
    the decoder up and is not counted. Also reports the process's CPU seconds per image meanwhile.
    """
    with _torchvision_io():
        encoded = [read_file(str(p)) for p in paths]

    def run(i: int) -> None:
        batch = [encoded[(i * batch_size + j) % len(encoded)] for j in range(batch_size)]
        with _torchvision_io():
            decoded = decode_jpeg(batch, mode=ImageReadMode.RGB, device=device)
        augment_batch(decoded, pre=pre, min_area=augment["min_area"], color_distort=augment["color_distort"])

    run(0)
    sync(device)
    cpu, start = time.process_time(), time.perf_counter()
    done = 0
    while done < max_batches and (done == 0 or time.perf_counter() - start < seconds):
        run(done + 1)
        sync(device)
        done += 1
    elapsed = time.perf_counter() - start
    images = done * batch_size
    return {
        "images_per_s": images / elapsed,
        "images": images,
        "seconds": elapsed,
        "cpu_s_per_image": (time.process_time() - cpu) / images,
        "batch_size": batch_size,
        "device": str(device),
        "files": len(paths),
    }


def _rate(images_per_s: float) -> str:
    return f"{images_per_s:.0f}" if images_per_s >= 10 else f"{images_per_s:.2g}"


def loader_verdicts(
    loader: dict[str, Any], training: dict[str, float], *, device_decode: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """For each network's best training rate (images/s): does the loader keep up, and if not, what would."""
    rate, workers = loader["images_per_s"], loader["workers"]
    per_worker = loader["per_worker_images_per_s"]
    verdicts = []
    for model, train in training.items():
        slow = rate < train
        verdict: dict[str, Any] = {
            "model": model,
            "training_images_per_s": train,
            "loader_images_per_s": rate,
            "bottleneck": slow,
            "workers_needed": math.ceil(train / per_worker),
        }
        text = (
            f"{model}: the loader gives {_rate(rate)} images/s with {workers} worker(s), training takes "
            f"{_rate(train)}: data loading {'IS' if slow else 'is not'} the bottleneck"
        )
        if slow:
            need = verdict["workers_needed"]
            text += f". Fix: about {need} CPU workers at the measured {_rate(per_worker)} images/s each"
            if device_decode is not None:
                decode = device_decode["images_per_s"]
                verdict["device_decode_share"] = train / decode  # of the GPU's time at the training rate
                text += (
                    f", or decode and augment on the GPU (torchvision.io.decode_jpeg(device='cuda'): {_rate(decode)} "
                    f"images/s, about {train / decode:.0%} of the GPU's time at the training rate)"
                )
        verdict["text"] = text
        verdicts.append(verdict)
    return verdicts
