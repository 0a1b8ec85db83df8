"""One optimiser step: forward, backward, one synchronisation of the ranks, the update.

Each step reseeds torch's generator with `derive_seed(seed, rank, step, 1)` before the forward
pass, so its dropout masks are a pure function of the step: a resumed run draws the same ones; the
batch's mixup / cutmix (mixing.py) is seeded by the step as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet.data import Batch, derive_seed
from inceptionnet.training import distributed
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.faults import TrainingDiverged, divergence_message
from inceptionnet.training.learner import Learner
from inceptionnet.training.mixing import mix_batch


@dataclass(frozen=True)
class StepSync:
    """What the ranks agree on after a step's backward pass: their means, from a single all-reduce."""

    loss: float
    grad_norm: float  # before clipping
    stop: bool  # a rank was asked to stop (SIGTERM / SIGINT)
    zero_fraction: float  # the probe's statistics (zeros when the step was not probed)
    dead_channels: float

    def scalars(self, lr: float, *, probed: bool) -> dict[str, float]:
        """The step's values for the run log, the probe's only on probed steps."""
        values = {"loss": self.loss, "lr": lr, "grad_norm": self.grad_norm}
        if probed:
            values |= {"zero_fraction": self.zero_fraction, "dead_channels": self.dead_channels}
        return values


def skip_batch(batch: Batch, ctx: Context) -> bool:
    """Whether no step is taken on this batch: every rank must take part in a step, so a batch
    without readable images on any rank skips the step on all."""
    if ctx.distributed:
        return bool(distributed.all_sum(torch.tensor([float(len(batch.targets) == 0)]), ctx).item())
    return len(batch.targets) == 0


def train_step(
    learner: Learner,
    batch: Batch,
    *,
    cfg: TrainConfig,
    ctx: Context,
    step: int,
    probed: bool,
    stop_requested: float,
    epoch: int,
    out_dir: Path,
) -> StepSync:
    """Take optimiser step `step` (0-based) on `batch` at the learning rate already set in the optimiser.

    Raises TrainingDiverged, before the update, when the agreed loss or gradient norm is not finite
    (with fp16 the scaler skips overflowed steps itself); `epoch` and `out_dir` go into its message.
    """
    torch.manual_seed(derive_seed(cfg.seed, ctx.rank, step, 1))  # dropout masks
    images = batch.images.to(ctx.device, non_blocking=True)
    targets = batch.targets.to(ctx.device, non_blocking=True)
    alphas = {"mixup": cfg.mixup, "cutmix": cfg.cutmix, "num_classes": learner.model.num_classes}
    images, targets = mix_batch(images, targets, **alphas, seed=cfg.seed, rank=ctx.rank, step=step)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    if learner.probe is not None:
        learner.probe.armed = probed
    with learner.autocast:
        loss = _loss(learner.net, images, targets, cfg, use_aux=learner.use_aux)
    learner.optimizer.zero_grad(set_to_none=True)
    scaler = learner.scaler
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:
        scaler.unscale_(learner.optimizer)
    grad_norm = nn.utils.clip_grad_norm_(learner.model.parameters(), cfg.clip_grad_norm or math.inf)

    sync = _sync(loss, grad_norm, stop_requested=stop_requested, learner=learner, ctx=ctx)
    if not math.isfinite(sync.loss) or (scaler is None and not math.isfinite(sync.grad_norm)):
        lr = learner.optimizer.param_groups[0]["lr"]
        message = divergence_message(
            loss=sync.loss, grad_norm=sync.grad_norm, step=step, epoch=epoch, lr=lr, cfg=cfg, out_dir=out_dir
        )
        raise TrainingDiverged(message)
    _update(learner, cfg, ctx)
    return sync


def _loss(
    net: nn.Module, images: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig, *, use_aux: bool
) -> torch.Tensor:
    """Label-smoothed cross-entropy, plus aux_weight times that of the auxiliary head (TF-slim)."""
    if not use_aux:
        return F.cross_entropy(net(images), targets, label_smoothing=cfg.label_smoothing)
    logits, aux_logits = net(images, return_aux=True)
    main = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
    return main + cfg.aux_weight * F.cross_entropy(aux_logits, targets, label_smoothing=cfg.label_smoothing)


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
