"""The training loss: one function for single-label and multi-label runs, main and auxiliary head alike.

- single-label (a softmax over the classes): label-smoothed cross-entropy. The targets are class indices (N,),
  or class probabilities (N, C) (labels mixed into a vector, as mixing augmentations make them), which
  `F.cross_entropy` takes as they are;
- multi-label (a sigmoid per class): binary cross-entropy with logits on multi-hot vectors (N, C), the mean
  over images and classes. Label smoothing pulls each 0/1 target halfway-symmetrically towards 1/2:
  y * (1 - eps) + eps / 2, the two-outcome form of cross-entropy's smoothing (eps spread over 2 outcomes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def training_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    multi_label: bool = False,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of `logits` (N, C) against `targets`: label-smoothed cross-entropy, or for `multi_label` binary
    cross-entropy with logits on the float multi-hot `targets` (N, C), smoothed to y * (1 - eps) + eps / 2.

    `class_weights` (C,) (training/balance.py): cross-entropy's per-class `weight`, or for `multi_label` the
    `pos_weight` of each class's positive term."""
    if not multi_label:
        return F.cross_entropy(logits, targets, weight=class_weights, label_smoothing=label_smoothing)
    if targets.shape != logits.shape:
        raise ValueError(
            f"multi-label targets must be one 0/1 vector per image, shaped like the logits {tuple(logits.shape)}, "
            f"not {tuple(targets.shape)}; open the data with multi-hot targets (ImageSource.give_multi_hot)"
        )
    smoothed = targets.to(logits.dtype) * (1 - label_smoothing) + label_smoothing / 2
    return F.binary_cross_entropy_with_logits(logits, smoothed, pos_weight=class_weights)
