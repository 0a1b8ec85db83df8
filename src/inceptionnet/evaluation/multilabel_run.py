"""`eval` of a multi-label network: a sigmoid per class, averaged over 1, 10, 12 or 144 views of each image
(the loader, subset and pass of the single-label protocol: views.py, members.py) of a split whose images have
several labels, scored by evaluation.multilabel at the thresholds of the network's card.

The data's classes are matched to the network's outputs by name (classmap.py, the card's class names), so the
split may hold fewer classes than the network, in any order; a class the network does not know is an error.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inceptionnet.evaluation.members import Member, PassTimes, ScoredBatch
from inceptionnet.evaluation.multilabel import MultiLabelScores, multilabel_scores
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


def score_multilabel(
    member: Member, passes: Iterable[ScoredBatch], times: PassTimes, *, data: str, crops: int, ranks: Ranks | None
) -> MultiLabelResult:
    """Score a multi-label network from its pass over the images (members.probability_passes): every image's
    probabilities and labels in output order, at the thresholds of the network's card. Under torchrun (`ranks`)
    every rank gathers all the images' rows: average precision needs each image's probability, not sums, and the
    scores equal one process's."""
    probs, targets = [], []
    for scored in passes:
        probs.append(scored.probs[0])
        targets.append(scored.model_targets(member))
    outputs = member.classes.num_classes
    probs_all = torch.cat(probs) if probs else torch.zeros(0, outputs)  # none readable here: another rank may have
    targets_all = torch.cat(targets) if targets else torch.zeros(0, outputs)
    skipped = times.skipped
    if ranks is not None and ranks.distributed:
        probs_all, targets_all = all_rows(probs_all, ranks), all_rows(targets_all, ranks)
        skipped = int(all_sum(torch.tensor([skipped]), ranks))
    if len(probs_all) == 0:
        raise ValueError("no readable images to evaluate")
    card = member.card
    scores = multilabel_scores(probs_all, targets_all, card.thresholds)
    return MultiLabelResult(member.name, data, list(card.class_names), len(probs_all), skipped, scores, crops)
