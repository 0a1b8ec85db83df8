"""Top-1 / top-5 error of one network or an ensemble over 1, 10, 12 or 144 views per image.

The paper's protocol (paper-spec section 11, docs/evaluation.md): each view goes through the
network, the softmax probabilities are averaged over an image's views and then over the ensemble's
members, and the averaged distribution is ranked. Evaluation takes built networks and a folder of
images; it knows nothing about training.

Memory stays bounded by one loader batch: images are decoded and cut into views by the DataLoader
workers as uint8 (a 144-view image at 299 is 39 MB), and the views go through each network
`batch_size` at a time, scaled and normalised just before the forward pass.

The loader that decodes images and cuts their views (evalviews.py), the result classes
(evalscore.py) and the speed measurements of the two halves alone (evalspeed.py) live in their own
modules; their public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms.v2 import functional as F

from inceptionnet.evalscore import ClassScore, EvalResult, Score, _Tally  # noqa: F401 (ClassScore, Score: re-exported)
from inceptionnet.evalspeed import Throughput, measure_inference, measure_loading  # noqa: F401 (re-exported)
from inceptionnet.evalviews import (
    DEFAULT_WORKERS,
    MultiViewTransform,
    ViewBatch,  # noqa: F401 (re-exported)
    ViewConfig,  # noqa: F401 (re-exported)
    _dataset,
    _images_per_batch,
    _loader,
    _view_config,
    collate_views,  # noqa: F401 (re-exported)
)
from inceptionnet.models import Preprocessing, create_model

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
