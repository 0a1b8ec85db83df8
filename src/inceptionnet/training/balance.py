"""Loss weights against class imbalance (`--class-weights balanced`), from the training split's class frequency.

Single-label: the weight of class c is n_samples / (n_classes * count_c), scikit-learn's "balanced"
formula: a class with half the average number of images weighs 2, and the weighted mean over the
split's images is 1, so the loss keeps its scale. It is the `weight=` of the cross-entropy.

Multi-label (a sample's target is a tuple of classes; the loss is a binary cross-entropy per class):
each class's positive term is weighted by negatives / positives, its count of images without the class
over its count with it (`pos_weight=` of `binary_cross_entropy_with_logits`). This is chosen over the
single-label weights because the imbalance of a multi-label class is between its own positives and
negatives, not between classes: with pos_weight every class's positives and negatives weigh the
same in total, while the single-label formula would also scale the many negatives of a rare class.

A class with no training image has no frequency to balance by: both refuse it, by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from inceptionnet.data.sources.base import Target


def class_counts(targets: Sequence[Target], classes: Sequence[str]) -> torch.Tensor:
    """The number of images of each class (an image of several classes counts once for each), int64."""
    flat = [c for t in targets for c in (t if isinstance(t, tuple) else (t,))]
    return torch.bincount(torch.tensor(flat, dtype=torch.long), minlength=len(classes))


def _require_every_class(counts: torch.Tensor, classes: Sequence[str]) -> None:
    missing = [classes[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
    if missing:
        raise ValueError(
            f"--class-weights balanced: no training image of class {', '.join(map(repr, missing))}; add images of "
            "it, or train without --class-weights"
        )


def balanced_weights(targets: Sequence[Target], classes: Sequence[str]) -> torch.Tensor:
    """n_samples / (n_classes * count_c) per class (float32), for single-label `targets`."""
    counts = class_counts(targets, classes)
    _require_every_class(counts, classes)
    return (len(targets) / (len(classes) * counts.double())).float()


def positive_weights(targets: Sequence[Target], classes: Sequence[str]) -> torch.Tensor:
    """negatives / positives per class (float32), for multi-label `targets` (a tuple of classes each)."""
    positives = class_counts(targets, classes)
    _require_every_class(positives, classes)
    return ((len(targets) - positives).double() / positives.double()).float()


def loss_weights(
    targets: Sequence[Target], classes: Sequence[str], *, mode: str, multi_label: bool
) -> torch.Tensor | None:
    """The loss weights `--class-weights mode` asks for: None for "none"; for "balanced", `positive_weights`
    for a `multi_label` run, else `balanced_weights`."""
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"class_weights {mode!r}: choose none or balanced")
    return positive_weights(targets, classes) if multi_label else balanced_weights(targets, classes)
