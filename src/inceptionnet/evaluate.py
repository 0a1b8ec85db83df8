"""Top-1 / top-5 error of one network or an ensemble over 1, 10, 12 or 144 views per image.

The paper's protocol (paper-spec section 11, docs/evaluation.md): each view goes through the
network, the softmax probabilities are averaged over an image's views and then over the ensemble's
members, and the averaged distribution is ranked. Evaluation takes built networks and a folder of
images; it knows nothing about training.

Memory stays bounded by one loader batch: images are decoded and cut into views by the DataLoader
workers as uint8 (a 144-view image at 299 is 39 MB), and the views go through each network
`batch_size` at a time, scaled and normalised just before the forward pass.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms.v2 import functional as F

from inceptionnet.crops import CROP_SCHEMES, render_views, views_for
from inceptionnet.data import ImageFolder, collate_skipping_bad
from inceptionnet.models import Preprocessing, create_model

DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
_SYNSET = re.compile(r"^n\d{8}$")


# -- which output is which folder class -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassMap:
    """How a network's outputs line up with the folder's classes."""

    offset: int  # 1 when output 0 is the background class of TF-trained 1001-way networks, else 0
    num_classes: int  # outputs after the offset; the softmax runs over these
    target_index: tuple[int, ...]  # the output (after the offset) of each folder class, in folder order
    rule: str  # "imagenet synsets" or "folder order"


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 WordNet ids in sorted order: the class order of every ImageNet-1k checkpoint.

    Read from the class table that ships with the package (data/imagenet_classes.txt).
    """
    text = resources.files("inceptionnet").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line.split(" ", 1)[0] for line in text.splitlines() if line.strip())


def map_classes(folder_classes: Sequence[str], num_outputs: int, *, model: str = "the model") -> ClassMap:
    """Line up a network's outputs with an ImageFolder's (sorted) class folders.

    A 1000-way network (or 1001-way, whose output 0 is TF's background class and is dropped)
    evaluated on folders named by ImageNet synsets maps each folder to the synset's index in the
    sorted ILSVRC-2012 list, so a folder with a subset of the classes works too. Otherwise the
    folder must have exactly as many classes as the network has outputs, matched in sorted order.
    """
    offset = 1 if num_outputs == 1001 else 0
    n = num_outputs - offset
    classes = list(folder_classes)
    if n == 1000 and classes and all(_SYNSET.match(c) for c in classes):
        index = {s: i for i, s in enumerate(imagenet_synsets())}
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise ValueError(
                f"class folders {unknown[:5]} are not ILSVRC-2012 synsets, so they cannot be matched to the "
                f"outputs of the 1000-class {model}; rename or remove them"
            )
        return ClassMap(offset, n, tuple(index[c] for c in classes), "imagenet synsets")
    if len(classes) == n:
        return ClassMap(offset, n, tuple(range(n)), "folder order")
    shown = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "")
    raise ValueError(
        f"the folder has {len(classes)} class folders ({shown}) but {model} has {num_outputs} outputs; use a folder "
        f"with one sub-folder per output (matched in sorted order), or ImageNet synset folders (n01440764, ...) "
        f"for a 1000- or 1001-class network"
    )


# -- building the networks ------------------------------------------------------------------------------------


def supports_weights() -> bool:
    """Whether `create_model` takes `weights=` (tag or local file) in this installation."""
    return "weights" in inspect.signature(create_model).parameters


def build_model(
    name: str, *, weights: str | None = None, num_classes: int | None = None, width: float | None = None
) -> nn.Module:
    """`create_model(name, weights=weights)`, or a randomly initialised network when `weights` is None."""
    options: dict[str, Any] = {}
    if num_classes is not None:
        options["num_classes"] = num_classes
    if width is not None:
        options["width"] = width
    if weights is None:
        return create_model(name, **options)
    if not supports_weights():
        raise ValueError(
            f"cannot load weights {weights!r}: this installation's create_model has no weights= keyword "
            f"(inceptionnet.weights is missing); update inceptionnet, or evaluate without weights"
        )
    try:
        return create_model(name, weights=weights, **options)
    except TypeError as err:
        raise ValueError(f"cannot build {name} with weights {weights!r}: {err}") from None


def parse_member(spec: str) -> tuple[str, str | None]:
    """`"inception_v4"` -> ("inception_v4", None); `"inception_v4:tag-or-path"` -> ("inception_v4", "tag-or-path")."""
    name, sep, weights = spec.partition(":")
    if sep and not weights:
        raise ValueError(f"model {spec!r} ends with ':' but names no weights; write NAME or NAME:WEIGHTS")
    return name, (weights if sep else None)


# -- data: decode once, cut the views of every preprocessing the members need ----------------------------------


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
    views: tuple[torch.Tensor, ...]  # per ViewConfig: uint8 (N, views, C, S, S)
    targets: torch.Tensor  # (N,) folder class indices
    skipped: int  # unreadable images dropped from this batch


def collate_views(samples: list[tuple[tuple[torch.Tensor, ...], int] | None]) -> ViewBatch:
    """`collate_skipping_bad` for samples that carry one view tensor per ViewConfig."""
    width = next((len(s[0]) for s in samples if s is not None), 0)
    if width == 0:
        return ViewBatch((), torch.empty(0, dtype=torch.long), len(samples))
    parts = [collate_skipping_bad([None if s is None else (s[0][i], s[1]) for s in samples]) for i in range(width)]
    return ViewBatch(tuple(p.images for p in parts), parts[0].targets, parts[0].skipped)


def _dataset(data_dir: str | Path, transform: MultiViewTransform, max_images: int | None) -> tuple[Dataset, list[str]]:
    folder = ImageFolder(data_dir, transform=transform)
    if max_images is None or max_images >= len(folder):
        return folder, folder.classes
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    # Evenly spaced over the (class-sorted) samples, so a quick check still sees every part of the folder.
    step = len(folder) / max_images
    return Subset(folder, [int(i * step) for i in range(max_images)]), folder.classes


def _loader(dataset: Dataset, *, images_per_batch: int, workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=images_per_batch,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_views,
        pin_memory=pin_memory,
    )


def _images_per_batch(batch_size: int, views: int) -> int:
    # Enough images to fill about one forward batch of views; one image when its views alone exceed it.
    return max(1, batch_size // views)


def _view_config(pre: Preprocessing, crops: int) -> ViewConfig:
    # The 144-view scales follow from the input size alone: networks differing only in crop fraction share views.
    return ViewConfig(pre.input_size, 1.0 if crops == 144 else pre.crop_fraction, pre.interpolation)


# -- results ----------------------------------------------------------------------------------------------------


def _pct(correct: int, total: int) -> float:
    return 100.0 * correct / total if total else math.nan


@dataclass(frozen=True)
class ClassScore:
    name: str
    images: int
    top1_correct: int
    top5_correct: int

    @property
    def top1_accuracy(self) -> float:
        return _pct(self.top1_correct, self.images)

    @property
    def top5_accuracy(self) -> float:
        return _pct(self.top5_correct, self.images)


@dataclass(frozen=True)
class Score:
    """One row of the paper's tables. Accuracies and errors are in percent."""

    model: str
    crops: int
    images: int
    top1_correct: int
    top5_correct: int
    per_class: tuple[ClassScore, ...] = ()

    @property
    def top1_accuracy(self) -> float:
        return _pct(self.top1_correct, self.images)

    @property
    def top5_accuracy(self) -> float:
        return _pct(self.top5_correct, self.images)

    @property
    def top1_error(self) -> float:
        return 100.0 - self.top1_accuracy

    @property
    def top5_error(self) -> float:
        return 100.0 - self.top5_accuracy

    def per_class_table(self) -> str:
        """Accuracy per class, for the classes with images."""
        rows = ["| class | images | top-1 acc. | top-5 acc. |", "|---|---|---|---|"]
        rows += [
            f"| {c.name} | {c.images} | {c.top1_accuracy:.2f} | {c.top5_accuracy:.2f} |"
            for c in self.per_class
            if c.images
        ]
        return "\n".join(rows)

    def to_dict(self, *, per_class: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model,
            "crops": self.crops,
            "images": self.images,
            "top1_correct": self.top1_correct,
            "top5_correct": self.top5_correct,
            "top1_error": _finite(self.top1_error),
            "top5_error": _finite(self.top5_error),
            "top1_accuracy": _finite(self.top1_accuracy),
            "top5_accuracy": _finite(self.top5_accuracy),
        }
        if per_class:
            d["per_class"] = [
                {
                    "class": c.name,
                    "images": c.images,
                    "top1_accuracy": _finite(c.top1_accuracy),
                    "top5_accuracy": _finite(c.top5_accuracy),
                }
                for c in self.per_class
            ]
        return d


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


@dataclass(frozen=True)
class EvalResult:
    """Every number of one evaluation: a Score per member, then the ensemble's when there are several."""

    scores: tuple[Score, ...]
    crops: int
    images: int  # images scored
    skipped: int  # unreadable images, left out of every score
    seconds: float  # wall time from the first loader request to the last score
    model_seconds: float  # time inside the networks (forward, softmax, averaging)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ensemble(self) -> Score | None:
        return self.scores[-1] if len(self.scores) > 1 else None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan

    @property
    def views_per_s(self) -> float:
        """Views of the images per second; each member of an ensemble sees every view."""
        return self.images * self.crops / self.seconds if self.seconds > 0 else math.nan

    def to_dict(self, *, per_class: bool = False) -> dict[str, Any]:
        from inceptionnet import __version__

        return {
            "version": __version__,
            "config": self.config,
            "crops": self.crops,
            "images": self.images,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "images_per_s": _finite(self.images_per_s),
            "views_per_s": _finite(self.views_per_s),
            "results": [s.to_dict(per_class=per_class) for s in self.scores],
        }

    def describe(self) -> str:
        return (
            f"{self.images} images ({self.skipped} skipped), {self.crops} crops: {self.seconds:.1f} s, "
            f"{self.images_per_s:.2f} images/s, {self.views_per_s:.1f} views/s "
            f"({self.model_seconds:.1f} s inside the networks)"
        )

    def table(self) -> str:
        """The scores as a Markdown table shaped like the paper's Tables 2-5 (errors in percent)."""
        rows = ["| model | crops | top-1 error | top-5 error | top-1 acc. | top-5 acc. | images |", "|---" * 7 + "|"]
        for s in self.scores:
            rows.append(
                f"| {s.model} | {s.crops} | {s.top1_error:.2f} | {s.top5_error:.2f} | "
                f"{s.top1_accuracy:.2f} | {s.top5_accuracy:.2f} | {s.images} |"
            )
        return "\n".join(rows)


class _Tally:
    """Running top-1 / top-5 counts, overall and per folder class."""

    def __init__(self, num_folder_classes: int) -> None:
        self.images = torch.zeros(num_folder_classes, dtype=torch.long)
        self.top1 = torch.zeros(num_folder_classes, dtype=torch.long)
        self.top5 = torch.zeros(num_folder_classes, dtype=torch.long)

    def add(self, probs: torch.Tensor, folder_targets: torch.Tensor, model_targets: torch.Tensor) -> None:
        top = probs.topk(min(5, probs.shape[1]), dim=1).indices
        hit = top == model_targets[:, None]
        n = self.images.numel()
        self.images += torch.bincount(folder_targets, minlength=n)
        self.top1 += torch.bincount(folder_targets, weights=hit[:, 0].double(), minlength=n).long()
        self.top5 += torch.bincount(folder_targets, weights=hit.any(1).double(), minlength=n).long()

    def score(self, model: str, crops: int, classes: Sequence[str]) -> Score:
        per_class = tuple(
            ClassScore(c, int(i), int(a), int(b))
            for c, i, a, b in zip(classes, self.images, self.top1, self.top5, strict=True)
        )
        return Score(model, crops, int(self.images.sum()), int(self.top1.sum()), int(self.top5.sum()), per_class)


# -- evaluation -------------------------------------------------------------------------------------------------


@dataclass
class _Member:
    name: str
    model: nn.Module
    pre: Preprocessing
    config_index: int  # which of the loader's view tensors this network takes
    classes: ClassMap


def _named(models: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module]) -> list[tuple[str, nn.Module]]:
    if isinstance(models, nn.Module):
        models = [models]
    items = list(models.items()) if isinstance(models, Mapping) else [(None, m) for m in models]
    if not items:
        raise ValueError("no model to evaluate; pass one network or several")
    named = []
    for i, (name, m) in enumerate(items):
        if name is None:
            name = getattr(m, "model_name", type(m).__name__)
            name = name if len(items) == 1 else f"{name} #{i + 1}"
        named.append((str(name), m))
    return named


def _num_outputs(model: nn.Module, pre: Preprocessing, device: torch.device) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    with torch.inference_mode():
        return int(model(torch.zeros(1, 3, pre.input_size, pre.input_size, device=device)).shape[-1])


def view_probabilities(
    model: nn.Module,
    views: torch.Tensor,
    *,
    preprocessing: Preprocessing,
    offset: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """uint8 views (N, V, C, S, S) -> (N, classes) softmax probabilities averaged over each image's V views.

    The views go through `model` `batch_size` at a time, scaled to [0, 1] and normalised with the
    preprocessing's mean and std; the first `offset` outputs (TF's background class) are dropped
    before the softmax. Probabilities, not logits, are averaged, as GoogLeNet and the paper do.
    """
    n_images, n_views = views.shape[:2]
    mean, std = list(preprocessing.mean), list(preprocessing.std)
    probs = []
    for chunk in views.flatten(0, 1).split(batch_size):
        x = F.to_dtype(chunk.to(device, non_blocking=True), torch.float32, scale=True)
        logits = model(F.normalize(x, mean=mean, std=std)).float()
        probs.append(logits[:, offset:].softmax(dim=-1))
    return torch.cat(probs).view(n_images, n_views, -1).mean(dim=1).cpu()


def _member_probabilities(m: _Member, views: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    cm = m.classes
    probs = view_probabilities(
        m.model, views, preprocessing=m.pre, offset=cm.offset, batch_size=batch_size, device=device
    )
    if probs.shape[-1] != cm.num_classes:
        raise ValueError(
            f"{m.name} returned {probs.shape[-1] + cm.offset} outputs, expected {cm.num_classes + cm.offset}"
        )
    return probs


def evaluate(
    models: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module],
    data_dir: str | Path,
    *,
    crops: int = 1,
    batch_size: int = 32,
    workers: int = DEFAULT_WORKERS,
    device: str | torch.device | None = None,
    input_size: int | None = None,
    max_images: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Top-1 / top-5 of each network and of their ensemble on an ImageFolder (`data_dir/<class>/<image>`).

    `models`: one network, a list, or a {name: network} mapping; each uses its own `preprocessing`
    (input size, crop fraction, interpolation, mean, std), so v4 and IR-v2 can form one ensemble.
    `crops`: 1, 10, 12 or 144 views per image (docs/evaluation.md). `batch_size`: views per forward
    pass. `input_size` overrides every network's input size. `max_images` takes an evenly spaced
    subset, for quick checks. Networks are moved to `device` and put in eval mode for the run.
    Unreadable images are skipped and counted in `EvalResult.skipped`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    named = _named(models)
    pres = []
    for _, m in named:
        pre = getattr(m, "preprocessing", Preprocessing())
        pres.append(dataclasses.replace(pre, input_size=input_size) if input_size is not None else pre)
    configs = list(dict.fromkeys(_view_config(p, crops) for p in pres))
    dataset, classes = _dataset(data_dir, MultiViewTransform(crops, configs), max_images)

    members = []
    for (name, m), pre in zip(named, pres, strict=True):
        m.to(dev)
        cmap = map_classes(classes, _num_outputs(m, pre, dev), model=name)
        members.append(_Member(name, m, pre, configs.index(_view_config(pre, crops)), cmap))
    # map_classes accepts a folder only for networks of one class count, so the members agree on the classes.
    first = members[0].classes
    targets_map = torch.tensor(first.target_index, dtype=torch.long)

    loader = _loader(
        dataset,
        images_per_batch=_images_per_batch(batch_size, crops),
        workers=workers,
        pin_memory=dev.type == "cuda",
    )
    tallies = [_Tally(len(classes)) for _ in range(len(members) + (len(members) > 1))]
    skipped, model_seconds = 0, 0.0
    training = [m.model.training for m in members]
    for m in members:
        m.model.eval()
    start = time.perf_counter()
    try:
        batches = loader
        if progress:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"eval {crops} crop(s)", unit="batch")
        for batch in batches:
            skipped += batch.skipped
            if batch.targets.numel() == 0:
                continue
            tick = time.perf_counter()
            with torch.inference_mode():
                probs = [_member_probabilities(m, batch.views[m.config_index], batch_size, dev) for m in members]
            model_seconds += time.perf_counter() - tick
            if len(probs) > 1:
                probs.append(torch.stack(probs).mean(dim=0))
            model_targets = targets_map[batch.targets]
            for tally, p in zip(tallies, probs, strict=True):
                tally.add(p, batch.targets, model_targets)
    finally:
        for m, was_training in zip(members, training, strict=True):
            m.model.train(was_training)
    seconds = time.perf_counter() - start

    names = [m.name for m in members] + ([f"ensemble of {len(members)}"] if len(members) > 1 else [])
    scores = tuple(t.score(n, crops, classes) for t, n in zip(tallies, names, strict=True))
    config = {
        "data_dir": str(data_dir),
        "crops": crops,
        "batch_size": batch_size,
        "workers": workers,
        "device": str(dev),
        "cpu_threads": torch.get_num_threads(),
        "max_images": max_images,
        "class_mapping": first.rule,
        "background_class_dropped": [m.classes.offset == 1 for m in members],
        "members": [{"name": m.name, "preprocessing": dataclasses.asdict(m.pre)} for m in members],
    }
    return EvalResult(scores, crops, scores[0].images, skipped, seconds, model_seconds, config)


# -- throughput of the two halves alone -------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
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
        d.update(images_per_s=_finite(self.images_per_s), views_per_s=_finite(self.views_per_s))
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
    configs = list(dict.fromkeys(_view_config(p, crops) for p in pres))
    dataset, _ = _dataset(data_dir, MultiViewTransform(crops, configs), max_images)
    loader = _loader(dataset, images_per_batch=_images_per_batch(batch_size, crops), workers=workers, pin_memory=False)
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
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    size = input_size or getattr(model, "preprocessing", Preprocessing()).input_size
    total = images * crops
    x = torch.randn(min(batch_size, total), 3, size, size, device=dev)
    was_training = model.training
    model.to(dev).eval()
    try:
        with torch.inference_mode():
            model(x).softmax(dim=-1)
            _sync(dev)
            start = time.perf_counter()
            done = 0
            while done < total:
                n = min(batch_size, total - done)
                model(x[:n]).float().softmax(dim=-1)
                done += n
            _sync(dev)
            seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
    return Throughput("inference", crops, images, total, seconds)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
