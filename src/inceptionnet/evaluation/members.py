"""The networks of an evaluation and the one pass over the images that both label modes score.

`members` moves each network to the device and lines its outputs up with the data's classes
(classmap.py: by name where the network names its classes); `probability_passes` runs every loader
batch through every member in eval mode and yields each image's probabilities averaged over its
views (softmax, or a sigmoid per class for a multi-label network), the members' and, for an
ensemble, their mean. The single-label protocol tallies them (protocol.py), the multi-label one
keeps them all for average precision (multilabel_run.py); both keep them for a report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from inceptionnet.card import ModelCard
from inceptionnet.evaluation.classmap import ClassMap, map_classes
from inceptionnet.evaluation.views import ViewBatch, view_probability_pair
from inceptionnet.export.runtimes import network_card
from inceptionnet.models import Preprocessing


@dataclass
class Member:
    """One network of the evaluation, with what it needs to score a batch."""

    name: str
    model: nn.Module
    card: ModelCard | None  # None: a module that declares no card
    pre: Preprocessing
    config_index: int  # which of the loader's view tensors this network takes
    classes: ClassMap

    @property
    def label_mode(self) -> str:
        return self.card.label_mode if self.card is not None else "single"


@dataclass
class ScoredBatch:
    """One loader batch with each image's probabilities: per member, then the ensemble's mean (several members)."""

    probs: list[torch.Tensor]  # (N, outputs) each, N the batch's readable images
    batch: ViewBatch
    first: int  # the position in the loader's dataset of the batch's first image (unreadable ones included)
    uncalibrated: list[torch.Tensor] | None = None  # as `probs` without the cards' temperatures; None: none has one

    def model_targets(self, member: Member) -> torch.Tensor:
        """The batch's labels in the networks' output order: class indices, or multi-hot rows over the outputs."""
        index = torch.tensor(member.classes.target_index, dtype=torch.long)
        targets = self.batch.targets
        if targets.dim() == 1:
            return index[targets]
        rows = torch.zeros(len(targets), member.classes.num_classes)
        rows[:, index] = targets.float()
        return rows

    def positions(self) -> list[int]:
        return [self.first + i for i in self.batch.positions()]


@dataclass
class PassTimes:
    seconds: float = 0.0  # the whole pass, loading included
    model_seconds: float = 0.0  # inside the networks
    skipped: int = 0  # unreadable images


def named_networks(models: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module]) -> list[tuple[str, nn.Module]]:
    """(name, network) of each network given: the mapping's names, else the card's model name (numbered)."""
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


def members(
    named: Sequence[tuple[str, nn.Module]],
    pres: Sequence[Preprocessing],
    config_indices: Sequence[int],
    classes: Sequence[str],
    *,
    device: torch.device,
) -> list[Member]:
    """Move each network to `device` and line its outputs up with the data's classes (by name where it has names).

    An ensemble averages its members' outputs, so they must mean the same classes: the same
    mapping of the data, and the same class names where both name theirs.
    """
    found: list[Member] = []
    for (name, m), pre, index in zip(named, pres, config_indices, strict=True):
        m.to(device)
        card = network_card(m)
        names = card.class_names if card is not None else None
        cmap = map_classes(classes, _num_outputs(m, card, pre, device), model=name, class_names=names)
        found.append(Member(name, m, card, pre, index, cmap))
        first = found[0]
        first_names = first.card.class_names if first.card is not None else None
        same_names = names is None or first_names is None or tuple(names) == tuple(first_names)
        same_map = (cmap.num_classes, cmap.target_index) == (first.classes.num_classes, first.classes.target_index)
        if not (same_names and same_map):
            raise ValueError(
                f"{name} and {first.name} do not share their classes ({cmap.num_classes} and "
                f"{first.classes.num_classes} outputs, mapped by {cmap.rule} and {first.classes.rule}); "
                "an ensemble needs networks trained on the same classes"
            )
    return found


def _num_outputs(model: nn.Module, card: ModelCard | None, pre: Preprocessing, device: torch.device) -> int:
    if card is not None:
        return card.num_classes
    with torch.inference_mode():
        return int(model(torch.zeros(1, 3, pre.input_size, pre.input_size, device=device)).shape[-1])


def probability_passes(
    found: Sequence[Member],
    loader: DataLoader,
    times: PassTimes,
    *,
    batch_size: int,
    device: torch.device,
    progress: str | None,
) -> Iterator[ScoredBatch]:
    """Every batch of readable images through every member in eval mode (restored afterwards), `batch_size`
    views per forward pass; `times` counts the seconds and the unreadable images. `progress`: the label of a
    progress bar on stderr (None: none)."""
    multi_label = found[0].label_mode == "multi"
    training = [m.model.training for m in found]
    for m in found:
        m.model.eval()
    start, seen = time.perf_counter(), 0
    try:
        for batch in tqdm(loader, desc=progress, unit="batch", disable=progress is None):
            times.skipped += batch.skipped
            first, seen = seen, seen + batch.skipped + len(batch.targets)
            if len(batch.targets) == 0:
                continue
            tick = time.perf_counter()
            with torch.inference_mode():
                pairs = [_probabilities(m, batch, batch_size, device, multi_label) for m in found]
            times.model_seconds += time.perf_counter() - tick
            probs = _with_mean([p for p, _ in pairs])
            calibrated = any(raw is not None for _, raw in pairs)
            raw = _with_mean([p if r is None else r for p, r in pairs]) if calibrated else None
            yield ScoredBatch(probs, batch, first, raw)
    finally:
        for m, was_training in zip(found, training, strict=True):
            m.model.train(was_training)
        times.seconds = time.perf_counter() - start


def _with_mean(probs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each member's probabilities, then (several members) the ensemble's: their mean."""
    return [*probs, torch.stack(probs).mean(dim=0)] if len(probs) > 1 else probs


def _probabilities(
    m: Member, batch: ViewBatch, batch_size: int, device: torch.device, multi_label: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A member's probabilities of a batch (its card's temperature applied), and without the temperature (None
    without one)."""
    cm = m.classes
    views = batch.views[m.config_index]
    how = {"preprocessing": m.pre, "offset": cm.offset, "batch_size": batch_size, "device": device}
    temperature = m.card.temperature if m.card is not None else None
    probs, raw = view_probability_pair(m.model, views, **how, multi_label=multi_label, temperature=temperature)
    if probs.shape[-1] != cm.num_classes:
        raise ValueError(
            f"{m.name} returned {probs.shape[-1] + cm.offset} outputs, expected {cm.num_classes + cm.offset}"
        )
    return probs, raw
