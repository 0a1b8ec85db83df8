"""Top-1 / top-5 error of one network or an ensemble over 1, 10, 12 or 144 views per image; the scores of a
multi-label network over the same views.

The paper's protocol (paper-spec section 11, docs/evaluation.md): each view goes through the
network, the softmax probabilities are averaged over an image's views and then over the ensemble's
members, and the averaged distribution is ranked. A multi-label network (its card says so) takes
the same loader and the same pass (members.py), a sigmoid per class averaged over the views, and is
scored by multilabel_run.py. Evaluation takes built networks and a folder of
images; it knows nothing about training.

Memory stays bounded by one loader batch: images are decoded and cut into views by the DataLoader
workers as uint8 (a 144-view image at 299 is 39 MB), and the views go through each network
`batch_size` at a time, scaled and normalised just before the forward pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet.devices import default_device
from inceptionnet.evaluation.members import (
    Member,
    PassTimes,
    ScoredBatch,
    members,
    named_networks,
    probability_passes,
)
from inceptionnet.evaluation.multilabel_run import MultiLabelResult, score_multilabel
from inceptionnet.evaluation.scores import EvalResult, Predictions, Tally
from inceptionnet.evaluation.sharding import check_sharding, sum_over_ranks
from inceptionnet.evaluation.views import DEFAULT_WORKERS, view_batches, view_config
from inceptionnet.export.runtimes import DescribedNetwork, network_card
from inceptionnet.models import Preprocessing
from inceptionnet.ranks import Ranks

# One kept batch: probabilities, output targets, positions in the dataset, probabilities without temperature
_Kept = tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor | None]


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
) -> EvalResult | MultiLabelResult:
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
    A multi-label network (alone) gives a MultiLabelResult: mAP, F1 and exact match at its card's thresholds.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_sharding(ranks, keep_predictions=keep_predictions)
    dev = default_device(device)
    named = named_networks(models)
    multi_label = _label_mode(named) == "multi"
    pres = [_preprocessing(m, input_size) for _, m in named]
    columns = {"image_column": image_column, "label_column": label_column}
    pin = dev.type == "cuda"  # ViewBatch.pin_memory: the copies to the GPU can overlap its work
    load = {"crops": crops, "batch_size": batch_size, "workers": workers, "max_images": max_images, "pin_memory": pin}
    loader, configs, classes = view_batches(data_dir, pres, **load, ranks=ranks, multi_label=multi_label, **columns)
    found = members(named, pres, [configs.index(view_config(p, crops)) for p in pres], classes, device=dev)
    times = PassTimes()
    label = f"eval {crops} crop(s)" if progress else None
    passes = probability_passes(found, loader, times, batch_size=batch_size, device=dev, progress=label)
    if multi_label:
        return score_multilabel(found[0], passes, times, data=str(data_dir), crops=crops, ranks=ranks)
    tallies, kept = _tally(found, passes, num_classes=len(classes), keep=keep_predictions)
    skipped = sum_over_ranks(tallies, times.skipped, ranks)
    predictions = _predictions(kept, loader.dataset, found[0], classes) if keep_predictions else None
    names = [m.name for m in found] + ([f"ensemble of {len(found)}"] if len(found) > 1 else [])
    scores = tuple(t.score(n, crops, classes) for t, n in zip(tallies, names, strict=True))
    settings = {"data_dir": str(data_dir), **columns, "crops": crops, "batch_size": batch_size, "workers": workers}
    config = {**settings, **_run_config(found, dev, max_images)}
    timing = (times.seconds, times.model_seconds)
    return EvalResult(scores, crops, scores[0].images, skipped, *timing, config, predictions=predictions)


def _tally(
    found: Sequence[Member], passes: Iterable[ScoredBatch], *, num_classes: int, keep: bool
) -> tuple[list[Tally], list[_Kept]]:
    """The top-1 / top-5 hits of each member and of the ensemble; with `keep`, every batch's probabilities
    (the last score's), output targets and positions in the loader's dataset, and the probabilities without the
    cards' temperatures (None without any)."""
    tallies = [Tally(num_classes) for _ in range(len(found) + (len(found) > 1))]
    kept = []
    for scored in passes:
        model_targets = scored.model_targets(found[0])  # members() checked that all map the classes alike
        for tally, p in zip(tallies, scored.probs, strict=True):
            tally.add(p, scored.batch.targets, model_targets)
        if keep:
            raw = scored.uncalibrated[-1] if scored.uncalibrated is not None else None
            kept.append((scored.probs[-1], model_targets, scored.positions(), raw))
    return tallies, kept


def _label_mode(named: Sequence[tuple[str, nn.Module]]) -> str:
    """ "single" or "multi": what the networks' cards say (several networks must say the same, and a multi-label
    network is evaluated alone, with its class names: its labels are matched to them)."""
    cards = {name: network_card(m) for name, m in named}
    modes = {name: card.label_mode if card is not None else "single" for name, card in cards.items()}
    if "multi" not in modes.values():
        return "single"
    if len(named) > 1:
        raise ValueError("a multi-label network is evaluated alone (no ensembles); drop the other --model")
    ((name, card),) = cards.items()
    if card.class_names is None:
        raise ValueError(f"{name} names no classes; a multi-label evaluation matches the data's labels to them")
    return "multi"


def _predictions(kept: list[_Kept], dataset: object, m: Member, classes: Sequence[str]) -> Predictions:
    """The kept probabilities, each image by its index in the data source (through the Subset of `max_images`)."""
    subset = getattr(dataset, "indices", None)
    parts = [(p, t, [i if subset is None else subset[i] for i in idx]) for p, t, idx, _ in kept]
    raw = [r for *_, r in kept]
    uncalibrated = torch.cat(raw).float() if raw and all(r is not None for r in raw) else None
    return Predictions.gather(parts, _output_names(m, classes), uncalibrated=uncalibrated)


def _output_names(m: Member, classes: Sequence[str]) -> list[str]:
    """A name for each output of the networks: their card's names, else the folder's where outputs follow it."""
    names = m.card.class_names if m.card is not None else None
    if names is not None and len(names) == m.classes.num_classes:
        return list(names)
    by_output = {out: c for c, out in zip(classes, m.classes.target_index, strict=True)}
    return [by_output.get(i, str(i)) for i in range(m.classes.num_classes)]


def _member_config(m: Member) -> dict[str, object]:
    """What the JSON says of one member: its name, its preprocessing, what ran it (None: the network as given)."""
    engine, precision = (m.model.engine, m.model.precision) if isinstance(m.model, DescribedNetwork) else (None, None)
    return {"name": m.name, "preprocessing": dataclasses.asdict(m.pre), "engine": engine, "precision": precision}


def _preprocessing(model: nn.Module, input_size: int | None) -> Preprocessing:
    card = network_card(model)
    pre = card.preprocessing if card is not None else Preprocessing()
    return dataclasses.replace(pre, input_size=input_size) if input_size is not None else pre


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
