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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from inceptionnet.card import ModelCard
from inceptionnet.devices import default_device
from inceptionnet.evaluation.classmap import ClassMap, map_classes
from inceptionnet.evaluation.scores import EvalResult, Predictions, Tally
from inceptionnet.evaluation.sharding import check_sharding, sum_over_ranks
from inceptionnet.evaluation.views import DEFAULT_WORKERS, view_batches, view_config, view_probabilities
from inceptionnet.export.runtimes import DescribedNetwork, network_card
from inceptionnet.models import Preprocessing
from inceptionnet.ranks import Ranks


@dataclass
class _Member:
    """One network of the evaluation, with what it needs to score a batch."""

    name: str
    model: nn.Module
    card: ModelCard | None  # None: a module that declares no card
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
            card = network_card(m)
            name = card.model_name if card is not None else type(m).__name__
            name = name if len(items) == 1 else f"{name} #{i + 1}"
        named.append((str(name), m))
    return named


def _num_outputs(model: nn.Module, card: ModelCard | None, pre: Preprocessing, device: torch.device) -> int:
    if card is not None:
        return card.num_classes
    with torch.inference_mode():
        return int(model(torch.zeros(1, 3, pre.input_size, pre.input_size, device=device)).shape[-1])


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
    image_column: str | None = None,
    label_column: str | None = None,
    keep_predictions: bool = False,
    ranks: Ranks | None = None,
) -> EvalResult:
    """Top-1 / top-5 of each network and of their ensemble on one split of a data source (`data.open_split`: an
    image folder `data_dir/<class>/<image>`, a folder with a metadata.csv / metadata.jsonl, or a Hugging Face
    dataset with its `image_column` / `label_column`).

    `models`: one network, a list, or a {name: network} mapping; each uses its card's `preprocessing`
    (input size, crop fraction, interpolation, mean, std), so v4 and IR-v2 can form one ensemble.
    `crops`: 1, 10, 12 or 144 views per image (docs/evaluation.md). `batch_size`: views per forward
    pass. `input_size` overrides every network's input size. `max_images` takes an evenly spaced
    subset, for quick checks. Networks are moved to `device` and put in eval mode for the run.
    Unreadable images are skipped and counted in `EvalResult.skipped`. `keep_predictions`: also keep
    each image's probabilities in `EvalResult.predictions` (`evaluation.report`). `ranks`: under torchrun, score
    this rank's share and sum the counts of all (evaluation/sharding.py; inside `ranks.process_group`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_sharding(ranks, keep_predictions=keep_predictions)
    dev = default_device(device)
    named = _named(models)
    pres = [_preprocessing(m, input_size) for _, m in named]
    columns = {"image_column": image_column, "label_column": label_column}
    pin = dev.type == "cuda"  # ViewBatch.pin_memory: the copies to the GPU can overlap its work
    loader, configs, classes = view_batches(
        data_dir,
        pres,
        crops=crops,
        batch_size=batch_size,
        workers=workers,
        max_images=max_images,
        pin_memory=pin,
        ranks=ranks,
        **columns,
    )
    members = _members(named, pres, [configs.index(view_config(p, crops)) for p in pres], classes, device=dev)
    label = f"eval {crops} crop(s)" if progress else None
    run = {"batch_size": batch_size, "device": dev, "progress": label, "keep": keep_predictions}
    counted = _count(members, loader, num_classes=len(classes), **run)
    counted.skipped = sum_over_ranks(counted.tallies, counted.skipped, ranks)
    kept = _predictions(counted, loader.dataset, members[0], classes) if keep_predictions else None
    names = [m.name for m in members] + ([f"ensemble of {len(members)}"] if len(members) > 1 else [])
    scores = tuple(t.score(n, crops, classes) for t, n in zip(counted.tallies, names, strict=True))
    settings = {"data_dir": str(data_dir), **columns, "crops": crops, "batch_size": batch_size, "workers": workers}
    config = {**settings, **_run_config(members, dev, max_images)}
    times = (counted.seconds, counted.model_seconds)
    return EvalResult(scores, crops, scores[0].images, counted.skipped, *times, config, predictions=kept)


def _predictions(counted: _Counts, dataset: object, m: _Member, classes: Sequence[str]) -> Predictions:
    """The kept probabilities, each image by its index in the data source (through the Subset of `max_images`)."""
    subset = getattr(dataset, "indices", None)
    parts = [(p, t, [i if subset is None else subset[i] for i in idx]) for p, t, idx in counted.kept]
    return Predictions.gather(parts, _output_names(m, classes))


def _output_names(m: _Member, classes: Sequence[str]) -> list[str]:
    """A name for each output of the networks: their card's names, else the folder's where outputs follow it."""
    names = m.card.class_names if m.card is not None else None
    if names is not None and len(names) == m.classes.num_classes:
        return list(names)
    by_output = {out: c for c, out in zip(classes, m.classes.target_index, strict=True)}
    return [by_output.get(i, str(i)) for i in range(m.classes.num_classes)]


def _member_config(m: _Member) -> dict[str, object]:
    """What the JSON says of one member: its name, its preprocessing, what ran it (None: the network as given)."""
    engine, precision = (m.model.engine, m.model.precision) if isinstance(m.model, DescribedNetwork) else (None, None)
    return {"name": m.name, "preprocessing": dataclasses.asdict(m.pre), "engine": engine, "precision": precision}


def _preprocessing(model: nn.Module, input_size: int | None) -> Preprocessing:
    card = network_card(model)
    pre = card.preprocessing if card is not None else Preprocessing()
    return dataclasses.replace(pre, input_size=input_size) if input_size is not None else pre


def _members(
    named: Sequence[tuple[str, nn.Module]],
    pres: Sequence[Preprocessing],
    config_indices: Sequence[int],
    classes: Sequence[str],
    *,
    device: torch.device,
) -> list[_Member]:
    """Move each network to `device` and line its outputs up with the folder's classes (by name where it has names).

    An ensemble averages its members' outputs, so they must mean the same classes: the same
    mapping of the folder, and the same class names where both name theirs.
    """
    members = []
    for (name, m), pre, index in zip(named, pres, config_indices, strict=True):
        m.to(device)
        card = network_card(m)
        names = card.class_names if card is not None else None
        cmap = map_classes(classes, _num_outputs(m, card, pre, device), model=name, class_names=names)
        members.append(_Member(name, m, card, pre, index, cmap))
        first = members[0]
        first_names = first.card.class_names if first.card is not None else None
        same_names = names is None or first_names is None or tuple(names) == tuple(first_names)
        same_map = (cmap.num_classes, cmap.target_index) == (first.classes.num_classes, first.classes.target_index)
        if not (same_names and same_map):
            raise ValueError(
                f"{name} and {first.name} do not share their classes ({cmap.num_classes} and "
                f"{first.classes.num_classes} outputs, mapped by {cmap.rule} and {first.classes.rule}); "
                "an ensemble needs networks trained on the same classes"
            )
    return members


@dataclass
class _Counts:
    """What one pass over the images counted: a Tally per member (then the ensemble's), and the times."""

    tallies: list[Tally]
    skipped: int  # unreadable images
    seconds: float  # the whole pass, loading included
    model_seconds: float  # inside the networks
    kept: list[tuple[torch.Tensor, torch.Tensor, list[int]]] = dataclasses.field(default_factory=list)


def _count(
    members: Sequence[_Member],
    loader: DataLoader,
    *,
    num_classes: int,
    batch_size: int,
    device: torch.device,
    progress: str | None,
    keep: bool = False,
) -> _Counts:
    """Run every batch through every member in eval mode (restored afterwards), and tally the hits.

    `progress`: the label of a progress bar on stderr; None shows none. `keep`: also keep each batch's
    probabilities (the last score's), output targets and positions in the loader's dataset.
    """
    # _members checked that the members map the folder's classes to the same outputs.
    targets_map = torch.tensor(members[0].classes.target_index, dtype=torch.long)
    counts = _Counts([Tally(num_classes) for _ in range(len(members) + (len(members) > 1))], 0, 0.0, 0.0)
    training = [m.model.training for m in members]
    for m in members:
        m.model.eval()
    start, seen = time.perf_counter(), 0
    try:
        for batch in tqdm(loader, desc=progress, unit="batch", disable=progress is None):
            counts.skipped += batch.skipped
            first, seen = seen, seen + batch.skipped + len(batch.targets)
            if batch.targets.numel() == 0:
                continue
            tick = time.perf_counter()
            with torch.inference_mode():
                probs = [_member_probabilities(m, batch.views[m.config_index], batch_size, device) for m in members]
            counts.model_seconds += time.perf_counter() - tick
            if len(probs) > 1:
                probs.append(torch.stack(probs).mean(dim=0))
            model_targets = targets_map[batch.targets]
            for tally, p in zip(counts.tallies, probs, strict=True):
                tally.add(p, batch.targets, model_targets)
            if keep:
                counts.kept.append((probs[-1], model_targets, [first + i for i in batch.positions()]))
    finally:
        for m, was_training in zip(members, training, strict=True):
            m.model.train(was_training)
    counts.seconds = time.perf_counter() - start
    return counts


def _run_config(members: Sequence[Any], dev: torch.device, max_images: int | None) -> dict[str, Any]:
    """What an evaluation records beside its settings: where it ran and how each network's outputs were read."""
    return {
        "device": str(dev),
        "cpu_threads": torch.get_num_threads(),
        "max_images": max_images,
        "class_mapping": members[0].classes.rule,
        "background_class_dropped": [m.classes.offset == 1 for m in members],
        "members": [_member_config(m) for m in members],
    }
