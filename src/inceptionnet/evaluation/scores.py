"""What an evaluation reports: top-1 / top-5 counts per network, per class and for the ensemble.

A class's top-1 accuracy is its recall (the share of its images whose top prediction is the class);
their mean over the classes with images is the balanced accuracy, the measure of an imbalanced test
set (each class counts the same, whatever its size; scikit-learn's `balanced_accuracy_score`).

`evaluate` fills these; they turn the counts into the paper's error rates, its table layout and
JSON. Accuracies and errors are in percent. `Tally` is the running counter behind every `Score`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from inceptionnet._version import __version__


def balanced_accuracy(correct: Sequence[float], images: Sequence[float]) -> float:
    """The mean recall of the classes with images (class c: correct[c] / images[c]), as a fraction; NaN when no
    class has images. The one balanced accuracy of evaluation, reports and training's validation, from counts
    (which sum over processes), equal to scikit-learn's `balanced_accuracy_score` of the same predictions
    (tests/test_training_balance.py)."""
    recalls = [c / n for c, n in zip(correct, images, strict=True) if n > 0]
    return sum(recalls) / len(recalls) if recalls else math.nan


class _Accuracies:
    """Top-1 / top-5 accuracy in percent from the counts of a score (NaN where there are no images)."""

    images: int
    top1_correct: int
    top5_correct: int

    @property
    def top1_accuracy(self) -> float:
        return 100.0 * self.top1_correct / self.images if self.images else math.nan

    @property
    def top5_accuracy(self) -> float:
        return 100.0 * self.top5_correct / self.images if self.images else math.nan


@dataclass(frozen=True)
class ClassScore(_Accuracies):
    """Top-1 / top-5 counts of one folder class."""

    name: str
    images: int
    top1_correct: int
    top5_correct: int


@dataclass(frozen=True)
class Score(_Accuracies):
    """One row of the paper's tables. Accuracies and errors are in percent."""

    model: str
    crops: int
    images: int
    top1_correct: int
    top5_correct: int
    per_class: tuple[ClassScore, ...] = ()

    @property
    def top1_error(self) -> float:
        return 100.0 - self.top1_accuracy

    @property
    def balanced_accuracy(self) -> float:
        """The mean per-class recall (top-1 accuracy) over the classes with images, in percent; NaN without classes."""
        classes = self.per_class
        return 100 * balanced_accuracy([c.top1_correct for c in classes], [c.images for c in classes])

    def per_class_recall(self) -> dict[str, float | None]:
        """Each class's recall in percent (its top-1 accuracy; None for a class without images)."""
        return {c.name: finite(c.top1_accuracy) for c in self.per_class}

    @property
    def top5_error(self) -> float:
        return 100.0 - self.top5_accuracy

    def per_class_table(self) -> str:
        """Accuracy per class, for the classes with images."""
        rows = ["| class | images | top-1 acc. (recall) | top-5 acc. |", "|---|---|---|---|"]
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
            "top1_error": finite(self.top1_error),
            "top5_error": finite(self.top5_error),
            "top1_accuracy": finite(self.top1_accuracy),
            "top5_accuracy": finite(self.top5_accuracy),
            "balanced_accuracy": finite(self.balanced_accuracy),
            "per_class_recall": self.per_class_recall(),
        }
        if per_class:
            d["per_class"] = [
                {
                    "class": c.name,
                    "images": c.images,
                    "top1_accuracy": finite(c.top1_accuracy),
                    "top5_accuracy": finite(c.top5_accuracy),
                }
                for c in self.per_class
            ]
        return d


def finite(x: float) -> float | None:
    """`x` rounded to 4 decimals for JSON, or None for NaN (JSON has no NaN)."""
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
    predictions: Predictions | None = None  # kept when asked (`evaluate(keep_predictions=True)`)

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
        return {
            "version": __version__,
            "config": self.config,
            "crops": self.crops,
            "images": self.images,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "images_per_s": finite(self.images_per_s),
            "views_per_s": finite(self.views_per_s),
            "results": [s.to_dict(per_class=per_class) for s in self.scores],
        }

    def describe(self) -> str:
        return (
            f"{self.images} images ({self.skipped} skipped), {self.crops} crops: {self.seconds:.1f} s, "
            f"{self.images_per_s:.2f} images/s, {self.views_per_s:.1f} views/s "
            f"({self.model_seconds:.1f} s inside the networks)"
        )

    def table(self) -> str:
        """The scores as a Markdown table shaped like the paper's Tables 2-5 (errors in percent), with the
        balanced accuracy (mean per-class recall) added."""
        header = "| model | crops | top-1 error | top-5 error | top-1 acc. | top-5 acc. | balanced acc. | images |"
        rows = [header, "|---" * 8 + "|"]
        for s in self.scores:
            rows.append(
                f"| {s.model} | {s.crops} | {s.top1_error:.2f} | {s.top5_error:.2f} | "
                f"{s.top1_accuracy:.2f} | {s.top5_accuracy:.2f} | {s.balanced_accuracy:.2f} | {s.images} |"
            )
        return "\n".join(rows)


@dataclass(frozen=True)
class Predictions:
    """Each scored image's probabilities, as the last score ranked them (the ensemble's when there are several).

    They are the averages over the views (and members) that top-1 / top-5 were counted from, so a
    report drawn from them agrees with the scores.
    """

    probabilities: torch.Tensor  # (N, outputs) float32
    targets: torch.Tensor  # (N,) the output of each image's class
    indices: torch.Tensor  # (N,) the image's index in the data source (its `load(i)`, `where(i)`)
    class_names: tuple[str, ...]  # one per output
    # the same without the cards' temperatures (the report's "before"); None where no card has one
    uncalibrated: torch.Tensor | None = None

    @classmethod
    def gather(
        cls,
        parts: Sequence[tuple[torch.Tensor, torch.Tensor, list[int]]],
        class_names: Sequence[str],
        *,
        uncalibrated: torch.Tensor | None = None,
    ) -> Predictions:
        """Join per-batch (probabilities, targets, source indices) into one record."""
        if not parts:
            empty = torch.empty(0, dtype=torch.long)
            return cls(torch.empty(0, len(class_names)), empty, empty, tuple(class_names))
        probs = torch.cat([p for p, _, _ in parts]).float()
        targets = torch.cat([t for _, t, _ in parts])
        indices = torch.tensor([i for _, _, idx in parts for i in idx], dtype=torch.long)
        return cls(probs, targets, indices, tuple(class_names), uncalibrated)


class Tally:
    """Running top-1 / top-5 counts, overall and per folder class."""

    def __init__(self, num_folder_classes: int) -> None:
        self.images = torch.zeros(num_folder_classes, dtype=torch.long)
        self.top1 = torch.zeros(num_folder_classes, dtype=torch.long)
        self.top5 = torch.zeros(num_folder_classes, dtype=torch.long)

    def add(self, probs: torch.Tensor, folder_targets: torch.Tensor, model_targets: torch.Tensor) -> None:
        """Count a batch: (N, outputs) probabilities, each image's folder class and its output index."""
        top = probs.topk(min(5, probs.shape[1]), dim=1).indices
        hit = top == model_targets[:, None]
        n = self.images.numel()
        self.images += torch.bincount(folder_targets, minlength=n)
        self.top1 += torch.bincount(folder_targets, weights=hit[:, 0].double(), minlength=n).long()
        self.top5 += torch.bincount(folder_targets, weights=hit.any(1).double(), minlength=n).long()

    def score(self, model: str, crops: int, classes: Sequence[str]) -> Score:
        """The counts so far as the Score of `model`; `classes` names the folder classes in index order."""
        per_class = tuple(
            ClassScore(c, int(i), int(a), int(b))
            for c, i, a, b in zip(classes, self.images, self.top1, self.top5, strict=True)
        )
        return Score(model, crops, int(self.images.sum()), int(self.top1.sum()), int(self.top5.sum()), per_class)
