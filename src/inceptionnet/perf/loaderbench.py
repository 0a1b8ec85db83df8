"""`inceptionnet bench --mode loader`: the training input pipeline's images/s per core, side by side.

Every contender reads the same JPEG files at the same input size with as many DataLoader workers as
there are cores, and is timed in turn, round by round, in one process:

- "ours (folder)": the training loader (`data.train_loader`) over the image folder, with the transform
  `inceptionnet train` builds (`training.inputs.training_transform`: PIL decode, the paper's random crop,
  flip, colour distortion, normalisation), seeded and resumable as in training;
- "ours (shards)": the same loader and transform over the same images written as WebDataset shards
  (`data.shardwriter.write_shards`, as `inceptionnet shards` writes them), read by `data.sources.ShardSource`;
- "timm": `timm.data.create_loader` over timm's `ImageDataset`, with timm's training augmentation
  (random-resized crop, flip, colour jitter 0.4), no prefetcher (the CPU does the normalisation, as ours);
- "torchvision": `torchvision.datasets.ImageFolder` with the transform of torchvision's classification
  reference (v2 RandomResizedCrop, horizontal flip, to float, normalise).

Every file is read once before any timing (page cache warm for all alike). A loader's rate is counted
after each worker's first batch (its start-up) for `seconds`; the median over the rounds is reported,
and divided by the number of workers (one per core) for the per-core rate.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from inceptionnet.data import open_split, train_loader
from inceptionnet.data.shardwriter import write_shards
from inceptionnet.extras import install_line, installed
from inceptionnet.models import Preprocessing
from inceptionnet.perf.measure import machine, quantiles
from inceptionnet.perf.pipeline import Repeated, link_jpegs, make_jpegs, steady_count
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.inputs import training_transform

SHARED_SAMPLE = Path("../shared/data/imagenet-sample")  # the development machines' 1,000 ImageNet JPEGs


@dataclass(frozen=True)
class LoaderBenchConfig:
    """One loader benchmark: the JPEGs (a folder of them at any depth; None: the shared ImageNet sample
    where present, else generated photos), the input size, batch, workers (0: one per core), time per
    round and rounds."""

    data: str | None = None
    images: int = 1000
    input_size: int = 299
    batch_size: int = 32
    workers: int = 0
    seconds: float = 10.0
    rounds: int = 3

    def resolved(self) -> LoaderBenchConfig:
        if self.images < 1 or self.batch_size < 1 or self.rounds < 1 or self.seconds <= 0:
            raise ValueError("--images, --batch-size and --iters must be >= 1, --seconds > 0")
        workers = self.workers or os.cpu_count() or 1
        return LoaderBenchConfig(
            self.data, self.images, self.input_size, self.batch_size, workers, self.seconds, self.rounds
        )


@dataclass
class LoaderRate:
    """One contender: what it runs, its images/s per round, and unreadable images met."""

    key: str
    label: str
    rounds: list[float] = field(default_factory=list)
    unreadable: int = 0

    @property
    def images_per_s(self) -> float:
        return quantiles(self.rounds)["median"] if self.rounds else float("nan")


@dataclass
class LoaderBenchResult:
    config: dict[str, Any]
    machine: str
    files: int
    date: str
    rates: list[LoaderRate]

    def to_json(self) -> str:
        rows = [{**asdict(r), "images_per_s": r.images_per_s} for r in self.rates]
        return json.dumps({**asdict(self), "rates": rows}, indent=2)


Contender = Callable[[], tuple[Iterable[Any], Callable[[Any], int]]]  # -> (batches, images in a batch)


def prepare_folder(cfg: LoaderBenchConfig, tmp: Path) -> tuple[Path, str]:
    """An image folder (`FOLDER/<class>/*.jpg`) of the benchmark's JPEGs, and where they came from: `cfg.data`
    as it is when it has class folders, else its JPEGs (any depth) linked into one class folder; by default
    the shared ImageNet sample where present, else generated photos."""
    root = tmp / "jpegs"
    if cfg.data is not None and any(p.is_dir() for p in Path(cfg.data).iterdir()):
        return Path(cfg.data), str(cfg.data)
    source = Path(cfg.data) if cfg.data is not None else SHARED_SAMPLE
    if source.is_dir():
        link_jpegs(source, root / "images", cfg.images)
        return root, str(source)
    make_jpegs(root / "images", cfg.images)
    return root, f"{cfg.images} generated 500x375 photos"


def warm_page_cache(folder: Path) -> int:
    """Read every file under `folder` once, so that no loader pays for the first read from disk (the first
    one timed would otherwise); returns how many files there are."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        path.read_bytes()
    return len(files)


def _long(dataset: Any, cfg: LoaderBenchConfig) -> Repeated:
    """`dataset` read round and round: an epoch longer than any round, so no round waits for new workers."""
    return Repeated(dataset, cfg.batch_size * max(cfg.workers, 1) * 10_000)


def ours(location: Path, cfg: LoaderBenchConfig) -> Contender:
    """The training loader and transform of `inceptionnet train` (the recipe's defaults) over `location`."""

    def build() -> tuple[Iterable[Any], Callable[[Any], int]]:
        size = cfg.input_size
        transform = training_transform(TrainConfig(), Preprocessing(input_size=size), input_size=size)
        source = open_split(location, transform=transform)
        loader, sampler, samples = train_loader(
            _long(source, cfg), batch_size=cfg.batch_size, num_workers=cfg.workers, seed=0
        )
        sampler.set_epoch(0)
        samples.set_epoch(0)
        return loader, lambda batch: len(batch.targets)

    return build


def timm_loader(folder: Path, cfg: LoaderBenchConfig) -> Contender:
    """timm's training loader and augmentation over timm's folder dataset (workers kept across epochs)."""
    from timm.data import ImageDataset, create_loader  # optional: timm is a development dependency

    def build() -> tuple[Iterable[Any], Callable[[Any], int]]:
        loader = create_loader(
            ImageDataset(str(folder)),
            input_size=(3, cfg.input_size, cfg.input_size),
            batch_size=cfg.batch_size,
            is_training=True,
            use_prefetcher=False,
            color_jitter=0.4,
            interpolation="bicubic",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            num_workers=cfg.workers,
            use_multi_epochs_loader=True,
        )
        return itertools.chain.from_iterable(itertools.repeat(loader, 10_000)), lambda batch: batch[0].shape[0]

    return build


def torchvision_loader(folder: Path, cfg: LoaderBenchConfig) -> Contender:
    """torchvision's ImageFolder with the transform of its classification reference recipe."""
    transform = v2.Compose(
        [
            v2.RandomResizedCrop(cfg.input_size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )

    def build() -> tuple[Iterable[Any], Callable[[Any], int]]:
        dataset = _long(torchvision.datasets.ImageFolder(str(folder), transform=transform), cfg)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.workers)
        return loader, lambda batch: batch[0].shape[0]

    return build


def as_shards(folder: Path, tmp: Path) -> Path:
    """The images of `folder` written as tar shards (`inceptionnet shards`, 1000 per shard); their train split."""
    pair = tmp / "pair"
    pair.mkdir()
    for split in ("train", "val"):  # the writer takes a train/val pair: the same folder as both
        (pair / split).symlink_to(folder.resolve(), target_is_directory=True)
    write_shards(pair, tmp / "shards")
    return tmp / "shards" / "train"


def contenders(folder: Path, cfg: LoaderBenchConfig, tmp: Path) -> tuple[dict[str, tuple[str, Contender]], list[str]]:
    """Each contender's key -> (label, builder), and notes on the ones left out."""
    found: dict[str, tuple[str, Contender]] = {"ours-folder": ("ours (folder)", ours(folder, cfg))}
    notes = []
    if installed("webdataset"):
        found["ours-shards"] = ("ours (shards)", ours(as_shards(folder, tmp), cfg))
    else:
        notes.append(f"webdataset is not installed: no shards were written ({install_line('shards', 'webdataset')})")
    if installed("timm"):
        found["timm"] = ("timm create_loader", timm_loader(folder, cfg))
    else:
        notes.append(f"timm is not installed: its loader was not timed ({install_line(None, 'timm')})")
    found["torchvision"] = ("torchvision ImageFolder", torchvision_loader(folder, cfg))
    return found, notes


def run_loader_benchmark(
    cfg: LoaderBenchConfig, *, log: Callable[[str], None] = lambda _msg: None
) -> LoaderBenchResult:
    """Every contender timed in turn, `cfg.rounds` rounds of `cfg.seconds` each."""
    cfg = cfg.resolved()
    with tempfile.TemporaryDirectory() as tmp:
        folder, origin = prepare_folder(cfg, Path(tmp))
        found, notes = contenders(folder, cfg, Path(tmp))
        files = warm_page_cache(folder)
        warm_page_cache(Path(tmp) / "shards")
        rates = {key: LoaderRate(key, label) for key, (label, _) in found.items()}
        for i in range(cfg.rounds):
            for key, (label, build) in found.items():
                batches, count = build()
                steady = steady_count(batches, count, skip=cfg.workers, seconds=cfg.seconds)
                rates[key].rounds.append(steady.images_per_s)
                log(f"round {i + 1}/{cfg.rounds}: {label} {rates[key].rounds[-1]:.1f} images/s")
    return LoaderBenchResult(
        config={**asdict(cfg), "source": origin, "notes": notes},
        machine=machine(torch.device("cpu")),
        files=files,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        rates=list(rates.values()),
    )


def format_loader_result(result: LoaderBenchResult) -> str:
    """The table: images/s, per core, and each against ours from the folder."""
    cfg = result.config
    base = result.rates[0].images_per_s
    lines = [
        f"training input at {cfg['input_size']}px, batch {cfg['batch_size']}, {cfg['workers']} workers, "
        f"{result.files} JPEGs ({cfg['source']}), median of {cfg['rounds']} rounds of {cfg['seconds']:g} s, "
        f"{result.machine}, torch {torch.__version__}",
        f"{'loader':<28}{'images/s':>10}{'per core':>10}{'vs ours (folder)':>18}",
    ]
    for r in result.rates:
        rate = r.images_per_s
        lines.append(f"{r.label:<28}{rate:>10.1f}{rate / cfg['workers']:>10.1f}{rate / base:>17.2f}x")
    lines.extend(f"note: {n}" for n in cfg["notes"])
    return "\n".join(lines)
