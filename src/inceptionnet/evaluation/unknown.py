"""Images of none of the classes ("unknown"): the threshold that rejects them, and how well a score tells them apart.

Three scores were compared (docs/calibration.md, with the command that measures them), each higher for
an image more like a known class:

- "msp": the top softmax probability (Hendrycks & Gimpel, ICLR 2017);
- "energy": logsumexp of the logits (Liu et al., NeurIPS 2020);
- "knn": minus the cosine distance from the image's pooled features (`forward_features` and the network's
  pooling, L2-normalised) to its k-th nearest training image's (Sun et al., ICML 2022).

The two first come from the logits alone, so every engine gives them; `models/outputs.py` computes them
wherever an image is classified. DEFAULT_SCORE is the one kept by that measurement. Its threshold is
fitted on known validation images: the value that `known_kept` of them reach (default 95%).
`detection` measures a score on known and unknown images: AUROC and the false-positive rate at 95%
true positives, with scikit-learn's metrics (the known images are the positives).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inceptionnet.card import DEFAULT_KNOWN_KEPT, UnknownRule
from inceptionnet.evaluation.logits import folder_logits, split_logits
from inceptionnet.export.runtimes import network_card
from inceptionnet.extras import require
from inceptionnet.models.outputs import unknown_scores

DEFAULT_SCORE = "energy"  # the best AUROC of the measured scores (docs/calibration.md)
LOGIT_SCORES = ("msp", "energy")  # what `eval --ood` measures: the scores a card can name
TRUE_POSITIVE_RATE = 0.95  # FPR is read where this share of the known images is kept


def fit_unknown_rule(
    known_scores: torch.Tensor, *, score: str = DEFAULT_SCORE, known_kept: float = DEFAULT_KNOWN_KEPT
) -> UnknownRule:
    """The rule that keeps at least `known_kept` of the known images whose scores are `known_scores`: its threshold
    is the highest value that many of them reach."""
    if len(known_scores) == 0:
        raise ValueError("no validation image to fit the unknown-image threshold on; check the --data split")
    if not 0 < known_kept < 1:
        raise ValueError(f"the share of known images kept must be between 0 and 1 (e.g. 0.95), got {known_kept}")
    ordered = known_scores.double().sort().values
    rejected = math.floor((1 - known_kept) * len(ordered) + 1e-9)  # at most this many below the threshold
    return UnknownRule(score=score, threshold=float(ordered[rejected]), known_kept=known_kept)


@dataclass(frozen=True)
class Detection:
    """How well one score tells known images (positives) from unknown ones."""

    score: str
    auroc: float  # area under the ROC curve, 0.5 = chance
    fpr_at_95_tpr: float  # the share of unknown images kept where 95% of the known ones are

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "auroc": round(self.auroc, 6), "fpr_at_95_tpr": round(self.fpr_at_95_tpr, 6)}


def detection(score: str, known: torch.Tensor, unknown: torch.Tensor) -> Detection:
    """AUROC and FPR at 95% TPR of `score`'s values on known and unknown images (higher: more known)."""
    if len(known) == 0 or len(unknown) == 0:
        raise ValueError(f"{len(known)} known and {len(unknown)} unknown images: both kinds are needed")
    metrics = require("sklearn.metrics", extra="report", purpose="the unknown-image AUROC")
    labels = np.concatenate([np.ones(len(known)), np.zeros(len(unknown))])
    values = np.concatenate([known.double().numpy(), unknown.double().numpy()])
    fpr, tpr, _ = metrics.roc_curve(labels, values)
    at = int(np.searchsorted(tpr, TRUE_POSITIVE_RATE, side="left"))
    return Detection(score, float(metrics.roc_auc_score(labels, values)), float(fpr[min(at, len(fpr) - 1)]))


def knn_scores(features: torch.Tensor, bank: torch.Tensor, *, k: int = 1, chunk: int = 1024) -> torch.Tensor:
    """Minus the cosine distance from each row of `features` (N, D) to its `k`-th nearest row of `bank` (M, D)."""
    if not 1 <= k <= len(bank):
        raise ValueError(f"k must be between 1 and the {len(bank)} training images, got {k}")
    bank = torch.nn.functional.normalize(bank.float(), dim=1)
    rows = torch.nn.functional.normalize(features.float(), dim=1)
    out = [(part @ bank.T).topk(k, dim=1).values[:, -1] for part in rows.split(chunk)]
    return torch.cat(out) - 1.0  # similarity - 1 = minus the cosine distance


@dataclass(frozen=True)
class UnknownResult:
    """`eval --ood`: each logit score's detection of the unknown images, and the card's rule applied to them."""

    detections: tuple[Detection, ...]
    known_images: int
    unknown_images: int
    rule: UnknownRule | None  # the card's; None without one
    known_rejected: float | None  # the shares answered "unknown" under the card's rule
    unknown_rejected: float | None

    def to_dict(self) -> dict[str, Any]:
        rule = self.rule.to_dict() if self.rule is not None else None
        rates = {"known_rejected": _rounded(self.known_rejected), "unknown_rejected": _rounded(self.unknown_rejected)}
        counts = {"known_images": self.known_images, "unknown_images": self.unknown_images}
        return {**counts, "scores": [d.to_dict() for d in self.detections], "card_rule": rule, **rates}

    def table(self) -> str:
        """The console lines: one per score, then the card's rule on these images."""
        lines = [f"unknown images: {self.unknown_images} beside {self.known_images} known (one central view each)"]
        lines += [
            f"  {d.score:<7} AUROC {100 * d.auroc:6.2f}%   FPR at 95% TPR {100 * d.fpr_at_95_tpr:6.2f}%"
            for d in self.detections
        ]
        if self.rule is not None and self.known_rejected is not None and self.unknown_rejected is not None:
            lines.append(
                f"  the card's rule ({self.rule.score} below {self.rule.threshold:.4g}) answers 'unknown' for "
                f"{100 * self.unknown_rejected:.2f}% of the unknown and {100 * self.known_rejected:.2f}% of the known"
            )
        return "\n".join(lines)


def unknown_result(
    known_logits: torch.Tensor, unknown_logits: torch.Tensor, *, rule: UnknownRule | None, temperature: float | None
) -> UnknownResult:
    """Measure every logit score on known and unknown images' logits, and the card's `rule` (if any) on them."""
    both = (known_logits, unknown_logits)
    known, unknown = ({s: unknown_scores(z, s, temperature=temperature) for s in LOGIT_SCORES} for z in both)
    detections = tuple(detection(s, known[s], unknown[s]) for s in LOGIT_SCORES)
    rates: tuple[float | None, float | None] = (None, None)
    if rule is not None:
        below = [float((side[rule.score] < rule.threshold).double().mean()) for side in (known, unknown)]
        rates = (below[0], below[1])
    return UnknownResult(detections, len(known_logits), len(unknown_logits), rule, *rates)


def measure_unknown(
    model: torch.nn.Module,
    data: str | os.PathLike[str],
    unknown_folder: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> UnknownResult:
    """`eval --ood`: the known images of the split `data` against the images below `unknown_folder` (of none of the
    network's classes), one central view each; the card's temperature and rule as the network's card gives them."""
    card = network_card(model)
    if card is not None and card.label_mode == "multi":
        raise ValueError("--ood scores single-label networks: a multi-label one answers unknown images with no label")
    how = {"batch_size": batch_size, "workers": workers, "device": device}
    columns = {"image_column": image_column, "label_column": label_column}
    known = split_logits(model, data, **how, max_images=max_images, **columns)
    unknown = folder_logits(model, unknown_folder, **how)
    rule, temperature = (card.unknown, card.temperature) if card is not None else (None, None)
    return unknown_result(known.logits, unknown.logits, rule=rule, temperature=temperature)


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
