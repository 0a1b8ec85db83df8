"""The training loop, in execution order: set-up, data, model, optimiser and average, resume, epochs, report.

One process per GPU under torchrun (DistributedDataParallel), or a single process on a CPU or GPU;
the code path is the same. Everything random is a pure function of (seed, epoch, step, rank): the
data order (sampler), each image's augmentation (data.SeededSamples) and the dropout masks
(reseeded every step), so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from inceptionnet._version import __version__
from inceptionnet.data import DEMO_DATA, eval_transform, image_folders, train_loader, train_transform, val_loader
from inceptionnet.factory import create_model
from inceptionnet.models.registry import get_entry
from inceptionnet.training import checkpoint, distributed
from inceptionnet.training.config import TrainConfig, config_changes
from inceptionnet.training.faults import StopRequest, TrainingDiverged, divergence_message
from inceptionnet.training.optim import WeightAverage, build_optimizer, learning_rate
from inceptionnet.training.probe import LastFeatureProbe
from inceptionnet.training.runlog import RunLog, format_epoch


@dataclass
class TrainResult:
    out_dir: Path
    epoch: int  # epochs finished
    step: int  # optimiser steps taken in total
    val_top1_error: float | None  # of the last evaluation (in %), None if none ran
    val_top5_error: float | None
    best_top1_error: float | None
    stopped_by: str | None  # "SIGTERM", "SIGINT" or "max_steps" when training stopped before the last epoch
    model: nn.Module  # the trained network (unwrapped)
    averaged: nn.Module | None  # its weight average (a WeightAverage), if enabled


def train(cfg: TrainConfig, *, resume: str | Path | None = None) -> TrainResult:
    """Train with `cfg`, or continue the run of the checkpoint (file or run folder) `resume`."""
    ctx = distributed.setup(cfg.device)
    try:
        return _train(cfg, ctx, resume)
    finally:
        distributed.cleanup(ctx)


def _train(cfg: TrainConfig, ctx: distributed.Context, resume: str | Path | None) -> TrainResult:
    say = tqdm.write if ctx.is_main else (lambda *_: None)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)

    # -- data --------------------------------------------------------------------------------------------
    pre = get_entry(cfg.model).preprocessing
    size = cfg.input_size or pre.input_size
    augment = {"min_area": cfg.min_area, "color_distort": cfg.color_distort, "interpolation": cfg.train_interpolation}
    train_set, val_set = image_folders(
        cfg.data or DEMO_DATA,
        train_transform=train_transform(pre, input_size=size, **augment),
        val_transform=eval_transform(pre, input_size=size),
        train_per_class=cfg.train_per_class,
        val_per_class=cfg.val_per_class,
    )
    shard = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "rank": ctx.rank,
        "world_size": ctx.world_size,
    }
    loader, sampler, samples = train_loader(train_set, seed=cfg.seed, **shard)
    val_batches = val_loader(val_set, **shard)
    steps_per_epoch = sampler.num_samples // cfg.batch_size
    schedule = {
        "decay_rate": cfg.lr_decay_rate,
        "decay_epochs": cfg.lr_decay_epochs,
        "warmup_epochs": cfg.warmup_epochs,
    }
    lr_at = partial(learning_rate, base_lr=cfg.lr, steps_per_epoch=steps_per_epoch, **schedule)

    # -- model, optimiser, weight average ------------------------------------------------------------------
    model, use_aux = _build_model(cfg, num_classes=len(train_set.classes))
    if cfg.sync_bn and ctx.distributed:
        if ctx.device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA (NCCL); on CPUs train without it")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(ctx.device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
    ema = WeightAverage(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    probe = LastFeatureProbe(model) if cfg.log_every > 0 else None  # zeros before pooling, on logged steps
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(ctx.device.type) if cfg.precision == "fp16" else None
    net: nn.Module = model
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None, forward_sync_buffers=False
        )
    if cfg.compile:
        net = torch.compile(net)
    autocast = _autocast(cfg, ctx.device)

    # -- resume ---------------------------------------------------------------------------------------------
    # batches: consumed in the current epoch (the sampler skips them on resume); losses: their sum and count
    pos = {"epoch": 0, "step": 0, "batches": 0, "loss_sum": 0.0, "losses": 0, "skipped": 0, "best_top1_error": None}
    if resume is not None:
        payload = checkpoint.load(resume)
        for key, (was, now) in config_changes(TrainConfig.from_dict(payload["config"]), cfg).items():
            say(f"note: {key} is {now!r} (the checkpoint's run used {was!r})")
        pos = checkpoint.restore(payload, model=model, ema=ema, optimizer=optimizer, scaler=scaler)
        out_dir = Path(cfg.out_dir) if cfg.out_dir else checkpoint.resolve(resume).parent
        say(f"resumed from {checkpoint.resolve(resume)} at epoch {pos['epoch'] + 1}, step {pos['step']}")
    else:
        out_dir = Path(cfg.out_dir or f"runs/{cfg.model}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    log = RunLog(out_dir, enabled=ctx.is_main)
    log.start(config=cfg.to_dict(), version=__version__, world_size=ctx.world_size, resumed_from=str(resume or ""))
    say(
        f"training {cfg.model} (width {cfg.width}, {size}px) on {len(train_set)} images of {len(train_set.classes)} "
        f"classes, {ctx.world_size} process(es) x batch {cfg.batch_size} on {ctx.device}; output in {out_dir}"
    )

    def save(name: str = checkpoint.LAST) -> None:
        if ctx.is_main:
            objects = {"model": model, "ema": ema, "optimizer": optimizer, "scaler": scaler}
            state = checkpoint.training_state(**objects, cfg=cfg, position=pos, classes=train_set.classes)
            checkpoint.save_atomic(state, out_dir / name)

    stop = StopRequest()
    top1 = top5 = None
    step = pos["step"]
    try:
        # -- epochs ---------------------------------------------------------------------------------------
        for epoch in range(pos["epoch"], cfg.epochs):
            sampler.set_epoch(epoch, start=pos["batches"] * cfg.batch_size)
            samples.set_epoch(epoch)
            model.train()
            started, images_seen = time.perf_counter(), 0
            bar = tqdm(
                loader,
                total=steps_per_epoch,
                initial=pos["batches"],
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                disable=not (ctx.is_main and cfg.progress),
                dynamic_ncols=True,
                leave=False,
            )
            for batch in bar:
                lr = lr_at(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                pos["skipped"] += batch.skipped
                pos["batches"] += 1
                if ctx.distributed:  # every rank must take part in the step: skip it on all if one has no images
                    empty = distributed.all_sum(torch.tensor([float(len(batch.targets) == 0)]), ctx).item()
                    if empty:
                        continue
                elif len(batch.targets) == 0:
                    continue
                torch.manual_seed(_step_seed(cfg.seed, ctx.rank, step))  # dropout masks
                images = batch.images.to(ctx.device, non_blocking=True)
                targets = batch.targets.to(ctx.device, non_blocking=True)
                if cfg.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)

                logged = cfg.log_every > 0 and step % cfg.log_every == 0
                if probe is not None:
                    probe.armed = logged
                with autocast:
                    loss = _loss(net, images, targets, cfg, use_aux=use_aux)
                optimizer.zero_grad(set_to_none=True)
                (scaler.scale(loss) if scaler is not None else loss).backward()
                if scaler is not None:
                    scaler.unscale_(optimizer)
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm or math.inf)

                # One synchronisation per step: mean loss, gradient norm, any stop request and the probe's
                # statistics, agreed by (averaged over) all ranks.
                flags = torch.cat(
                    [
                        torch.stack([loss.detach().float(), grad_norm.float()]),
                        torch.tensor([float(stop.requested)], device=ctx.device),
                        probe.take(ctx.device) if probe is not None else torch.zeros(2, device=ctx.device),
                    ]
                )
                loss_mean, norm, stop_now, zero_fraction, dead_channels = (
                    distributed.all_sum(flags, ctx) / ctx.world_size
                ).tolist()
                if not math.isfinite(loss_mean) or (scaler is None and not math.isfinite(norm)):
                    raise TrainingDiverged(
                        divergence_message(
                            loss=loss_mean, grad_norm=norm, step=step, epoch=epoch, lr=lr, cfg=cfg, out_dir=out_dir
                        )
                    )
                if scaler is not None:
                    scaler.step(optimizer)  # skips the step when fp16 gradients overflowed
                    scaler.update()
                else:
                    optimizer.step()
                if not cfg.sync_bn:
                    distributed.average_buffers(model, ctx)  # the same BN statistics on every rank
                if ema is not None:
                    ema.update(model)

                step += 1
                images_seen += len(batch.targets) * ctx.world_size
                pos.update(step=step, loss_sum=pos["loss_sum"] + loss_mean, losses=pos["losses"] + 1)
                rate = images_seen / (time.perf_counter() - started)
                bar.set_postfix(loss=f"{loss_mean:.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}", refresh=False)
                scalars = {"loss": loss_mean, "lr": lr, "grad_norm": norm}
                if logged:
                    scalars |= {"zero_fraction": zero_fraction, "dead_channels": dead_channels}
                log.step(step, epoch=epoch + 1, record=logged, **scalars)
                if stop_now or step == cfg.max_steps:
                    stopped_by = (stop.name or "signal") if stop_now else "max_steps"
                    save()
                    say(f"stopped by {stopped_by} at step {step} (epoch {epoch + 1}); checkpoint {out_dir / 'last.pt'}")
                    return _result(out_dir, pos, top1, top5, stopped_by, model, ema)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save()
            bar.close()

            # -- end of epoch: evaluate the weight average, log, checkpoint -------------------------------------
            train_time = time.perf_counter() - started
            evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            if evaluated:
                top1, top5 = evaluate(ema.module if ema is not None else model, val_batches, ctx, cfg, autocast)
            record = {
                "epoch": epoch + 1,
                "epochs": cfg.epochs,
                "step": step,
                "train_loss": pos["loss_sum"] / max(pos["losses"], 1),
                "val_top1_error": top1 if evaluated else None,
                "val_top5_error": top5 if evaluated else None,
                "lr": lr_at(max(step - 1, 0)),
                "images_per_s": images_seen / train_time,  # training only, evaluation excluded
                "train_time_s": train_time,
                "epoch_time_s": time.perf_counter() - started,
                "skipped_images": int(distributed.all_sum(torch.tensor([pos["skipped"]]), ctx).item()),
            }
            say(format_epoch(record))
            log.epoch(record)
            improved = record["val_top1_error"] is not None and (
                pos["best_top1_error"] is None or record["val_top1_error"] < pos["best_top1_error"]
            )
            if improved:
                pos["best_top1_error"] = record["val_top1_error"]
            pos.update(epoch=epoch + 1, batches=0, loss_sum=0.0, losses=0, skipped=0)
            save()
            if improved:
                save(checkpoint.BEST)
    finally:
        stop.restore()
        log.close()

    # -- final report ------------------------------------------------------------------------------------------
    if top1 is None:
        say(f"nothing to train: the run has finished its {cfg.epochs} epochs; pass --epochs N to train longer")
    else:
        say(
            f"done: {cfg.epochs} epochs, {step} steps; final val top-1 accuracy {100 - top1:.2f}% "
            f"(error {top1:.2f}%), top-5 accuracy {100 - top5:.2f}%; best top-1 error {pos['best_top1_error']:.2f}%; "
            f"checkpoints, metrics and curves in {out_dir}"
        )
    return _result(out_dir, pos, top1, top5, None, model, ema)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: torch.utils.data.DataLoader, ctx: distributed.Context, cfg: TrainConfig, autocast
) -> tuple[float, float]:
    """Top-1 and top-5 error (%) of `model` over the whole validation set (each rank holds a share)."""
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # top-1 correct, top-5 correct, images
    for batch in loader:
        if len(batch.targets) == 0:
            continue
        images = batch.images.to(ctx.device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch.targets.to(ctx.device, non_blocking=True)
        with autocast:
            logits = model(images)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        counts += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum(), torch.tensor(len(targets), device=ctx.device)])
    top1_ok, top5_ok, n = distributed.all_sum(counts, ctx).tolist()
    if n == 0:
        raise ValueError("no readable validation images; check the val/ folder")
    return 100 * (1 - top1_ok / n), 100 * (1 - top5_ok / n)


def _build_model(cfg: TrainConfig, *, num_classes: int) -> tuple[nn.Module, bool]:
    """The network, with its auxiliary head when it has one and aux_weight > 0 (inception_resnet_v1 and the
    paper's Inception-ResNet-v2 have none)."""
    options: dict[str, Any] = {"num_classes": num_classes, "width": cfg.width, "drop_rate": cfg.drop_rate}
    if cfg.residual_scale is not None:
        if not cfg.model.startswith("inception_resnet"):
            raise ValueError(f"--residual-scale applies to the Inception-ResNet networks only, not {cfg.model}")
        options["scales"] = (cfg.residual_scale,) * 3
    if cfg.aux_weight > 0:
        try:
            return create_model(cfg.model, aux_logits=True, **options), True
        except ValueError:  # this network has no auxiliary head: train the main loss only
            pass
    return create_model(cfg.model, **options), False


def _loss(
    net: nn.Module, images: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig, *, use_aux: bool
) -> torch.Tensor:
    """Label-smoothed cross-entropy, plus aux_weight times that of the auxiliary head (TF-slim)."""
    if not use_aux:
        return F.cross_entropy(net(images), targets, label_smoothing=cfg.label_smoothing)
    logits, aux_logits = net(images, return_aux=True)
    main = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
    return main + cfg.aux_weight * F.cross_entropy(aux_logits, targets, label_smoothing=cfg.label_smoothing)


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)


def _step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step, 1]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _result(out_dir, pos, top1, top5, stopped_by, model, ema) -> TrainResult:
    return TrainResult(out_dir, pos["epoch"], pos["step"], top1, top5, pos["best_top1_error"], stopped_by, model, ema)
