"""One optimiser step: forward and backward of its micro-batches (`--accumulate`), one synchronisation of
the ranks, the update.

Each step reseeds torch's generator with `derive_seed(seed, rank, step, 1)` before the forward
pass, so its dropout masks are a pure function of the step: a resumed run draws the same ones. The
mixup / cutmix of each batch (mixing.py) is seeded by the batch's number in the run, step * accumulate + i
for the step's i-th batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from inceptionnet.data import Batch, derive_seed
from inceptionnet.training import distributed
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.learner import Learner
from inceptionnet.training.losses import training_loss
from inceptionnet.training.mixing import mix_batch


@dataclass(frozen=True)
class StepRecipe:
    """What every step of a run takes: its settings, its processes and the loss weights of `--class-weights`."""

    cfg: TrainConfig
    ctx: Context
    class_weights: torch.Tensor | None = None


@dataclass(frozen=True)
class StepSync:
    """What the ranks agree on after a step's backward pass: their means, from a single all-reduce."""

    loss: float
    grad_norm: float  # before clipping
    stop: bool  # a rank was asked to stop (SIGTERM / SIGINT)
    zero_fraction: float  # the probe's statistics (zeros when the step was not probed)
    dead_channels: float
    diverged: bool = False  # the loss (or, without fp16's scaler, the gradient norm) is not finite: not applied

    def scalars(self, lr: float, *, probed: bool) -> dict[str, float]:
        """The step's values for the run log, the probe's only on probed steps."""
        values = {"loss": self.loss, "lr": lr, "grad_norm": self.grad_norm}
        if probed:
            values |= {"zero_fraction": self.zero_fraction, "dead_channels": self.dead_channels}
        return values


def kept_batches(group: Sequence[Batch], ctx: Context) -> list[Batch]:
    """The micro-batches of a step that hold readable images on every rank (one synchronisation): every rank
    must take part in each forward and backward pass, so a micro-batch empty on any rank is left out on all."""
    empty = torch.tensor([float(len(b.targets) == 0) for b in group])
    if ctx.distributed:
        empty = distributed.all_sum(empty, ctx)
    return [b for b, e in zip(group, empty.tolist(), strict=True) if e == 0]


def train_step(
    learner: Learner, batches: Sequence[Batch], recipe: StepRecipe, *, step: int, probed: bool, stop_requested: float
) -> StepSync:
    """Take optimiser step `step` (0-based) on `batches` (its micro-batches, `kept_batches`) at the learning
    rate already set in the optimiser; `probed`: measure the probe's statistics; `stop_requested`: this
    process's stop request, agreed with the others in the step's one synchronisation.

    The gradients of the micro-batches add up, each loss scaled by 1 / len(batches): the update of one
    batch that holds them all (for layers without batch statistics). Under DDP the ranks synchronise
    their gradients once, in the last micro-batch's backward pass.

    A step whose agreed loss or gradient norm is not finite is not applied (`StepSync.diverged`: the caller
    stops the run; with fp16 the scaler skips overflowed steps itself).
    """
    cfg, ctx, class_weights = recipe.cfg, recipe.ctx, recipe.class_weights
    torch.manual_seed(derive_seed(cfg.seed, ctx.rank, step, 1))  # dropout masks
    learner.optimizer.zero_grad(set_to_none=True)
    scaler = learner.scaler
    losses = []
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        images, targets = _inputs(batch, learner, cfg, ctx, number=step * cfg.accumulate + i)
        if learner.probe is not None:
            learner.probe.armed = probed and last
        with learner.net.no_sync() if ctx.distributed and not last else nullcontext():
            with learner.autocast:
                loss = _loss(learner, images, targets, cfg, weight=class_weights)
                loss = loss / len(batches)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        losses.append(loss.detach())
    if scaler is not None:
        scaler.unscale_(learner.optimizer)
    grad_norm = nn.utils.clip_grad_norm_(learner.model.parameters(), cfg.clip_grad_norm or math.inf)

    sync = _sync(torch.stack(losses).sum(), grad_norm, stop_requested=stop_requested, learner=learner, ctx=ctx)
    if not math.isfinite(sync.loss) or (scaler is None and not math.isfinite(sync.grad_norm)):
        return dataclasses.replace(sync, diverged=True)
    _update(learner, cfg, ctx)
    return sync


def _inputs(
    batch: Batch, learner: Learner, cfg: TrainConfig, ctx: Context, *, number: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and targets of the run's batch `number` on the device, mixed (`--mixup`, `--cutmix`)."""
    images = batch.images.to(ctx.device, non_blocking=True)
    targets = batch.targets.to(ctx.device, non_blocking=True)
    alphas = {"mixup": cfg.mixup, "cutmix": cfg.cutmix, "num_classes": learner.model.num_classes}
    images, targets = mix_batch(images, targets, **alphas, seed=cfg.seed, rank=ctx.rank, batch=number)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets


def _loss(
    learner: Learner, images: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig, *, weight: torch.Tensor | None
) -> torch.Tensor:
    """The training loss (losses.py: single- or multi-label, as the network's `label_mode`, with the class
    weights `weight` of `--class-weights`), plus aux_weight times that of the auxiliary head (TF-slim)."""
    how = {
        "label_smoothing": cfg.label_smoothing,
        "multi_label": learner.model.label_mode == "multi",
        "class_weights": weight,
    }
    if not learner.use_aux:
        return training_loss(learner.net(images), targets, **how)
    logits, aux_logits = learner.net(images, return_aux=True)
    return training_loss(logits, targets, **how) + cfg.aux_weight * training_loss(aux_logits, targets, **how)


def _sync(
    loss: torch.Tensor, grad_norm: torch.Tensor, *, stop_requested: float, learner: Learner, ctx: Context
) -> StepSync:
    """The step's one synchronisation: loss, gradient norm, stop request and probe statistics, averaged."""
    probe = learner.probe.take(ctx.device) if learner.probe is not None else torch.zeros(2, device=ctx.device)
    values = torch.cat(
        [
            torch.stack([loss.detach().float(), grad_norm.float()]),
            torch.tensor([stop_requested], device=ctx.device),
            probe,
        ]
    )
    mean_loss, mean_norm, stop, zero_fraction, dead_channels = (
        distributed.all_sum(values, ctx) / ctx.world_size
    ).tolist()
    return StepSync(mean_loss, mean_norm, bool(stop), zero_fraction, dead_channels)


def _update(learner: Learner, cfg: TrainConfig, ctx: Context) -> None:
    """Apply the gradients, keep BN statistics equal across ranks, move the weight average."""
    if learner.scaler is not None:
        learner.scaler.step(learner.optimizer)  # skips the step when fp16 gradients overflowed
        learner.scaler.update()
    else:
        learner.optimizer.step()
    if not cfg.sync_bn:
        distributed.average_buffers(learner.model, ctx)  # the same BN statistics on every rank
    if learner.ema is not None:
        learner.ema.update(learner.model)
