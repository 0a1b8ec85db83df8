"""Validation during training: top-1 and top-5 error over the validation set, shared out among the ranks
(multi-label: mAP and exact match at per-class thresholds tuned on these very predictions); a single-label
network's temperature and unknown-image threshold fitted on the same logits (evaluation/calibrate.py).

One central crop per image (the network's evaluation transform); the paper's multi-crop protocol
is `inceptionnet.evaluation`. Each rank counts its share on its device and one all-reduce adds the
counts, so every rank gets the errors of the whole set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.utils.data import DataLoader

from inceptionnet.card import UnknownRule
from inceptionnet.evaluation.calibrate import fit_calibration
from inceptionnet.evaluation.multilabel import MultiLabelScores, multilabel_scores, tune_thresholds
from inceptionnet.evaluation.scores import balanced_accuracy
from inceptionnet.training import distributed
from inceptionnet.training.distributed import Context


def _outputs(
    model: nn.Module,
    batches: DataLoader,
    *,
    ctx: Context,
    channels_last: bool,
    autocast: AbstractContextManager,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, targets) on the device of each non-empty batch, `model` put in eval mode."""
    model.eval()
    for batch in batches:
        if len(batch.targets) == 0:
            continue
        images = batch.images.to(ctx.device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(images)
        yield logits, batch.targets.to(ctx.device, non_blocking=True)


@torch.no_grad()
def validation_errors(
    model: nn.Module,
    batches: DataLoader,
    *,
    ctx: Context,
    channels_last: bool,
    autocast: AbstractContextManager,
    keep: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[float, float, float]:
    """Top-1 and top-5 error (%) of `model` (put in eval mode) over the whole validation set, and its balanced
    accuracy (%): the mean over the classes with images of each class's top-1 accuracy (its recall). `keep`: a
    list that gets this rank's (logits, targets) of each batch, for the calibration (`fit_on_logits`)."""
    classes = model.num_classes
    counts = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # top-1 correct, top-5 correct, images
    per_class = torch.zeros(2, classes, dtype=torch.float64, device=ctx.device)  # images, top-1 correct
    for logits, targets in _outputs(model, batches, ctx=ctx, channels_last=channels_last, autocast=autocast):
        if keep is not None:
            keep.append((logits.float(), targets))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        counts += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum(), torch.tensor(len(targets), device=ctx.device)])
        per_class[0] += torch.bincount(targets, minlength=classes).double()
        per_class[1] += torch.bincount(targets[hits[:, 0]], minlength=classes).double()
    total = distributed.all_sum(torch.cat([counts, per_class.flatten()]), ctx)
    top1_ok, top5_ok, n = total[:3].tolist()
    if n == 0:
        raise ValueError("no readable validation images; check the val/ folder")
    images, correct = total[3:].view(2, classes)
    balanced = 100 * balanced_accuracy(correct.tolist(), images.tolist())
    return 100 * (1 - top1_ok / n), 100 * (1 - top5_ok / n), balanced


def fit_on_logits(
    kept: list[tuple[torch.Tensor, torch.Tensor]], *, classes: int, ctx: Context
) -> tuple[float, UnknownRule]:
    """The temperature and unknown-image rule fitted on the validation logits that `validation_errors` kept, every
    rank's gathered (on every rank alike: the fit runs on the CPU, on the same rows); a ValueError says why not."""
    local = torch.cat([z for z, _ in kept]) if kept else torch.zeros(0, classes, device=ctx.device)
    local_targets = torch.cat([t for _, t in kept]) if kept else torch.zeros(0, dtype=torch.long, device=ctx.device)
    logits = distributed.all_rows(local, ctx).cpu()
    return fit_calibration(logits, distributed.all_rows(local_targets, ctx).cpu())


@torch.no_grad()
def multilabel_validation(
    model: nn.Module,
    batches: DataLoader,
    *,
    ctx: Context,
    channels_last: bool,
    autocast: AbstractContextManager,
) -> MultiLabelScores:
    """The multi-label scores of `model` (put in eval mode) over the whole validation set, at the per-class
    thresholds that maximise each class's F1 on it (evaluation.multilabel.tune_thresholds). Every rank
    gathers every rank's probabilities: the thresholds need all of them, not sums."""
    probs, targets = [], []
    for logits, batch_targets in _outputs(model, batches, ctx=ctx, channels_last=channels_last, autocast=autocast):
        probs.append(torch.sigmoid(logits.float()))
        targets.append(batch_targets)
    classes = model.num_classes
    local_probs = torch.cat(probs) if probs else torch.zeros(0, classes, device=ctx.device)
    local_targets = torch.cat(targets) if targets else torch.zeros(0, classes, device=ctx.device)
    all_probs, all_targets = (
        distributed.all_rows(local_probs, ctx).cpu(),
        distributed.all_rows(local_targets, ctx).cpu(),
    )
    if len(all_probs) == 0:
        raise ValueError("no readable validation images; check the val/ folder")
    return multilabel_scores(all_probs, all_targets, tune_thresholds(all_probs, all_targets))
