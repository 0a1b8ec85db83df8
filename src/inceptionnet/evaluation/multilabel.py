"""Scores of a multi-label network (a sigmoid per class): average precision, F1 at per-class thresholds,
exact match; and the thresholds themselves, tuned on validation predictions.

Everything works on `probs` (N, C), each class's probability, and `targets` (N, C), 0/1. An image counts
as showing class c when its probability reaches the class's threshold: p >= threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from inceptionnet.card import DEFAULT_THRESHOLD


@dataclass(frozen=True)
class MultiLabelScores:
    """How well per-class decisions match the labels; percentages, per-class lists in class order."""

    map: float  # mean of the per-class APs, over the classes with at least one positive image
    ap: list[float | None]  # None for a class without a positive image (AP is undefined there)
    f1: list[float]  # at each class's threshold
    micro_f1: float  # over all (image, class) decisions together
    macro_f1: float  # mean of the per-class F1s
    exact_match: float  # images whose every class decision is right
    thresholds: list[float]

    def to_dict(self) -> dict[str, object]:
        return {
            "map": self.map,
            "ap": self.ap,
            "f1": self.f1,
            "micro_f1": self.micro_f1,
            "macro_f1": self.macro_f1,
            "exact_match": self.exact_match,
            "thresholds": self.thresholds,
        }


def _ranked_counts(scores: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each distinct score, highest first: that score and the true and false positives of `scores >= it`."""
    order = torch.argsort(scores, descending=True, stable=True)
    ranked, hits = scores[order], positives[order].double()
    tp, fp = hits.cumsum(0), (1 - hits).cumsum(0)
    last_of_group = torch.ones_like(ranked, dtype=torch.bool)
    last_of_group[:-1] = ranked[1:] != ranked[:-1]  # ties are decided together
    return ranked[last_of_group], tp[last_of_group], fp[last_of_group]


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float | None:
    """Average precision of one class: the precision at each distinct score, weighted by the recall it adds
    (scikit-learn's `average_precision_score`); None without a positive image."""
    total = int(positives.sum())
    if total == 0:
        return None
    _, tp, fp = _ranked_counts(scores, positives.bool())
    recall = tp / total
    gained = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((gained * tp / (tp + fp)).sum())


def tune_thresholds(probs: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Each class's threshold that maximises its F1 on these (validation) predictions; ties go to the lower
    threshold (more recall for the same F1). Candidates are the predicted probabilities themselves; a class
    without a positive image keeps DEFAULT_THRESHOLD."""
    thresholds = []
    for c in range(probs.shape[1]):
        positives = targets[:, c].bool()
        total = int(positives.sum())
        if total == 0:
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        cut, tp, fp = _ranked_counts(probs[:, c].double(), positives)
        f1 = 2 * tp / (tp + fp + total)
        best = int(torch.nonzero(f1 == f1.max()).max())  # the last (lowest) of the best cuts
        thresholds.append(float(cut[best]))
    return thresholds


def decisions(probs: torch.Tensor, thresholds: Sequence[float] | None) -> torch.Tensor:
    """Which classes each image shows (bool (N, C)): probability >= the class's threshold (0.5 without any)."""
    if thresholds is None:
        thresholds = [DEFAULT_THRESHOLD] * probs.shape[1]
    return probs >= torch.tensor(thresholds, dtype=probs.dtype, device=probs.device)


def _f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """F1 = 2TP / (2TP + FP + FN), 0 where nothing was predicted nor expected."""
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))


def multilabel_scores(
    probs: torch.Tensor, targets: torch.Tensor, thresholds: Sequence[float] | None = None
) -> MultiLabelScores:
    """mAP, per-class AP, F1 at `thresholds` (0.5 each without them), micro/macro F1 and exact match (%)."""
    if len(probs) == 0:
        raise ValueError("no predictions to score; the data held no readable images")
    truth = targets.bool()
    said = decisions(probs, thresholds)
    tp, fp, fn = ((said & truth).sum(0), (said & ~truth).sum(0), (~said & truth).sum(0))
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    ap = [average_precision(probs[:, c].double(), truth[:, c]) for c in range(probs.shape[1])]
    defined = [a for a in ap if a is not None]
    return MultiLabelScores(
        map=100 * sum(defined) / len(defined) if defined else 0.0,
        ap=[100 * a if a is not None else None for a in ap],
        f1=(100 * _f1(tp, fp, fn)).tolist(),
        micro_f1=float(100 * _f1(tp.sum(), fp.sum(), fn.sum())),
        macro_f1=float(100 * _f1(tp, fp, fn).mean()),
        exact_match=float(100 * (said == truth).all(dim=1).double().mean()),
        thresholds=list(thresholds) if thresholds is not None else [DEFAULT_THRESHOLD] * probs.shape[1],
    )
