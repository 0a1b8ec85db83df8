"""Mixup and cutmix: each training batch blended with itself, on the device, before the forward pass.

torchvision's v2.MixUp / v2.CutMix do the mixing. They pair each image with the previous one in the
batch (the batch rolled by one; the batches are already shuffled), draw lambda from Beta(alpha, alpha)
and mix the labels with the same lambda (cutmix: the share of the image left unpasted). Integer targets
(N,) become float probability vectors (N, C); float multi-hot targets (N, C) are mixed as they are.
With both alphas set, each batch gets one of the two at even odds (v2.RandomChoice), as timm's default
`switch_prob=0.5` does.

The draws come from torch's CPU generator seeded by (seed, rank, batch, 2), under a forked generator, where
batch is the batch's number in the run (step.py: step * accumulate + i for a step's i-th batch): the mixing
of a batch is a pure function of its number, so a resumed run mixes as the uninterrupted one did, and the
dropout masks (seeded by (seed, rank, step, 1)) are the same with mixing as without.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2 as T

from inceptionnet.data import derive_seed

_MIXING_STREAM = 2  # the last key of a batch's mixing seed (1 is the dropout masks')


def _mixer(*, mixup: float, cutmix: float, num_classes: int) -> T.Transform | None:
    """The (images, targets) transform of these alphas (0 = off), or None when both are off."""
    mixers: list[T.Transform] = []
    if mixup > 0:
        mixers.append(T.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix > 0:
        mixers.append(T.CutMix(alpha=cutmix, num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else T.RandomChoice(mixers)


def mix_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    mixup: float,
    cutmix: float,
    num_classes: int,
    seed: int,
    rank: int,
    batch: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's batch number `batch` mixed (float (N, C) targets), or unchanged when both alphas are 0."""
    mixer = _mixer(mixup=mixup, cutmix=cutmix, num_classes=num_classes)
    if mixer is None:
        return images, targets
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, rank, batch, _MIXING_STREAM))
        return mixer(images, targets)
