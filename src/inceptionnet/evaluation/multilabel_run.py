"""`eval` of a multi-label network: a sigmoid per class, averaged over 1, 10, 12 or 144 views of each image
(the views of the single-label protocol, views.py) of a split whose images have several labels, scored by
evaluation.multilabel at the thresholds of the network's card.

The data's classes are matched to the network's outputs by name (the card's class names), so the split may
hold fewer classes than the network, in any order; a class the network does not know is an error.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from inceptionnet.data import open_split
from inceptionnet.evaluation.multilabel import MultiLabelScores, multilabel_scores
from inceptionnet.evaluation.sharding import rank_share
from inceptionnet.evaluation.views import (
    MultiViewTransform,
    collate_views,
    images_per_batch,
    view_config,
    view_probabilities,
)
from inceptionnet.export.runtimes import network_card
from inceptionnet.ranks import Ranks, all_rows, all_sum


@dataclass(frozen=True)
class MultiLabelResult:
    """A multi-label evaluation: the scores, the class of each output, and what was read."""

    model: str
    data: str
    class_names: list[str]
    images: int
    skipped: int  # unreadable images
    scores: MultiLabelScores
    crops: int = 1  # views per image

    def table(self) -> str:
        """The console report: the summary line, then AP, F1 and threshold of each class."""
        s = self.scores
        lines = [
            f"{self.model} on {self.images} images of {self.data} (multi-label, {self.crops} crop(s)"
            + (f", {self.skipped} unreadable skipped" if self.skipped else "")
            + ")",
            f"mAP {s.map:.2f}%  micro F1 {s.micro_f1:.2f}%  macro F1 {s.macro_f1:.2f}%  "
            f"exact match {s.exact_match:.2f}%",
            f"{'class':<24} {'AP %':>7} {'F1 %':>7} {'threshold':>9}",
        ]
        for name, ap, f1, t in zip(self.class_names, s.ap, s.f1, s.thresholds, strict=True):
            lines.append(f"{name[:24]:<24} {'-' if ap is None else f'{ap:.2f}':>7} {f1:7.2f} {t:9.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "label_mode": "multi",
            "crops": self.crops,
            "images": self.images,
            "skipped": self.skipped,
            "classes": self.class_names,
            **self.scores.to_dict(),
        }

    def write_report(self, folder: str | Path) -> Path:
        """An HTML page (folder/index.html) and scores.json: the summary and the per-class table."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scores.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        body = html.escape(self.table())
        title = html.escape(f"{self.model} on {self.data}")
        page = f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title></head>\n<body>\n"
        page += f"<h1>{title}</h1>\n<pre>{body}</pre>\n</body></html>\n"
        (out / "index.html").write_text(page)
        return out / "index.html"


def evaluate_multilabel(
    model: nn.Module,
    data: str | Path,
    *,
    name: str,
    crops: int = 1,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device = "cpu",
    input_size: int | None = None,
    max_images: int | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    ranks: Ranks | None = None,
) -> MultiLabelResult:
    """Score `model` (a multi-label network: its card says label_mode "multi") on the split `data`.

    `crops` views per image (1: the central crop), cut as the card's preprocessing says (`input_size` overrides
    its size), the sigmoid probabilities averaged over them; `max_images` takes an evenly spaced subset.
    Unreadable images are skipped and counted. Under torchrun (`ranks`), each rank computes its share of the
    probabilities (sharding.py) and every rank gathers them all: AP needs every image's probability, not
    sums, and the scores equal one process's.
    """
    card = network_card(model)
    if card is None or card.class_names is None:
        raise ValueError(f"{name} names no classes; a multi-label evaluation matches the data's labels to them")
    pre = card.preprocessing if input_size is None else dataclasses.replace(card.preprocessing, input_size=input_size)
    transform = MultiViewTransform(crops, [view_config(pre, crops)])
    source = open_split(data, transform=transform, image_column=image_column, label_column=label_column)
    outputs = _output_columns(source.classes, card.class_names, name=name)
    if max_images is not None and max_images < len(source):
        source.keep(torch.linspace(0, len(source) - 1, max_images).round().long().tolist())
    source.multi_hot = True
    share = rank_share(source, ranks)
    per_batch = images_per_batch(batch_size, crops)
    loader = DataLoader(share, batch_size=per_batch, num_workers=workers, collate_fn=collate_views)
    how = {"preprocessing": pre, "batch_size": batch_size, "device": device, "multi_label": True}
    probs, targets, skipped = _probabilities(model, loader, outputs, card.num_classes, how)
    if ranks is not None and ranks.distributed:
        probs, targets = all_rows(probs, ranks), all_rows(targets, ranks)
        skipped = int(all_sum(torch.tensor([skipped]), ranks))
    if len(probs) == 0:
        raise ValueError("no readable images to evaluate")
    scores = multilabel_scores(probs, targets, card.thresholds)
    return MultiLabelResult(name, str(data), list(card.class_names), len(probs), skipped, scores, crops)


def _output_columns(data_classes: Sequence[str], outputs: Sequence[str], *, name: str) -> list[int]:
    """The network output of each class of the data, by name."""
    unknown = [c for c in data_classes if c not in outputs]
    if unknown:
        raise ValueError(
            f"the data has classes {unknown[:10]} that {name} does not output (it knows {list(outputs)[:10]}); "
            "evaluate on data labelled with the network's classes"
        )
    return [list(outputs).index(c) for c in data_classes]


@torch.inference_mode()
def _probabilities(
    model: nn.Module, loader: DataLoader, outputs: list[int], num_classes: int, how: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Each image's sigmoid probabilities averaged over its views (`view_probabilities` with `how`), its
    multi-hot labels in output order, and the unreadable count."""
    model.eval()
    probs, targets, skipped = [], [], 0
    for batch in loader:
        skipped += batch.skipped
        if len(batch.targets) == 0:
            continue
        probs.append(view_probabilities(model, batch.views[0], **how))
        labels = torch.zeros(len(batch.targets), num_classes)
        labels[:, outputs] = batch.targets
        targets.append(labels)
    if not probs:  # none readable in this share: another rank may have some
        return torch.zeros(0, num_classes), torch.zeros(0, num_classes), skipped
    return torch.cat(probs), torch.cat(targets), skipped
