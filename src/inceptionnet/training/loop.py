"""The training loop as a table of contents: build the learner, set up the inputs, start or resume,
train and end each epoch, report.

One process per GPU under torchrun (DistributedDataParallel), or a single process on a CPU or GPU;
the code path is the same. Everything random is a pure function of (seed, epoch, step, rank): the
data order, each image's augmentation (inputs.py) and the dropout masks (step.py), so a run resumed
from its position (state.py) continues exactly as an uninterrupted one. Whether a command starts a
run or continues the one in its output folder is rundir.py's decision, taken once the command holds
the folder (runlock.py).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from inceptionnet._version import __version__
from inceptionnet.training import checkpoint, distributed, rundir, runlock
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.faults import StopReason, StopRequest, TrainingDiverged, divergence_message
from inceptionnet.training.inputs import TrainingInputs, set_up_inputs, training_classes
from inceptionnet.training.learner import Learner, build_learner
from inceptionnet.training.optim import set_learning_rate
from inceptionnet.training.rundir import Resume, RunStart
from inceptionnet.training.runlog import RunLog, format_epoch
from inceptionnet.training.session import RunSession, TrainResult
from inceptionnet.training.state import RunPosition
from inceptionnet.training.step import StepSync, kept_batches, train_step
from inceptionnet.training.validation import fit_on_logits, multilabel_validation, validation_errors
from inceptionnet.training.writer import RunWriter


def train(
    cfg: TrainConfig, *, resume: str | Path | Resume | None = None, model: nn.Module | None = None
) -> TrainResult:
    """Train with `cfg`, or continue a run: that of the checkpoint `resume` (a file, a run folder, or one read:
    rundir.Resume), or without it the run whose checkpoint `cfg.out_dir` holds, if that run's configuration is `cfg` up
    to `rundir.MAY_CHANGE` (a folder holding another run is refused with a ValueError, and so is one
    that another live command trains in: runlock.RunFolderBusy).

    `model`: a network to train (in place) instead of the one `cfg` describes (learner.build_network).
    """
    if resume is not None and not isinstance(resume, Resume):
        resume = Resume.read(resume)
    folder = rundir.run_folder(cfg, resume=resume)
    ctx = distributed.setup(cfg.device)
    try:
        with runlock.run_owner(folder.path, ctx, say=tqdm.write):  # refused here if another command trains there
            start = rundir.plan_start(cfg, resume=resume, world_size=ctx.world_size, folder=folder)
            return _train(cfg, ctx, start, model)
    finally:
        distributed.cleanup(ctx)


def _train(cfg: TrainConfig, ctx: Context, start: RunStart, model: nn.Module | None) -> TrainResult:
    """The phases of a run in its folder (claimed), in execution order."""
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    learner = build_learner(cfg, ctx, num_classes=len(training_classes(cfg)), model=model)
    inputs = set_up_inputs(cfg, ctx, network=learner.model)  # images prepared as the network's weights expect
    learner.describe_labels(inputs.label_mode)
    run = _start_or_resume(cfg, ctx, inputs, learner, start)
    idle = run.pos.nothing_left(epochs=cfg.epochs, max_steps=cfg.max_steps)
    if idle is not None:  # the folder is left untouched
        run.say(idle)
        return run.result(StopReason.MAX_STEPS if run.pos.epoch < cfg.epochs else None)
    run.log.start(
        epoch=run.pos.epoch,
        step=run.pos.step,
        config=cfg.to_dict(),
        version=__version__,
        world_size=ctx.world_size,
        resumed_from=str(start.source or ""),
    )
    stop = StopRequest()
    stopped_by: StopReason | None = None
    try:
        while stopped_by is None and run.pos.epoch < cfg.epochs:
            epoch = _train_epoch(run, stop)
            stopped_by = epoch.stopped_by
            if stopped_by is None:
                _end_epoch(run, epoch)
            else:
                _save_stopped(run, stopped_by)
    finally:
        stop.restore()
        run.log.close()
    if stopped_by is None:
        _report(run)
    return run.result(stopped_by)


@dataclass(frozen=True)
class _EpochOutcome:
    stopped_by: StopReason | None  # when the epoch stopped early
    started: float  # time.perf_counter() at its start
    train_time: float  # seconds
    images_seen: int  # by all ranks together


def _start_or_resume(
    cfg: TrainConfig, ctx: Context, inputs: TrainingInputs, learner: Learner, start: RunStart
) -> RunSession:
    """Restore the checkpoint the run continues from (if any) into the learner, announce the run."""
    say = tqdm.write if ctx.is_main else _silent
    pos, recovery = RunPosition(), None
    if start.payload is not None:
        for key, (was, now) in start.changes.items():
            say(f"note: {key} is {now!r} (the checkpoint's run used {was!r})")
        pos = checkpoint.restore(
            start.payload, model=learner.model, ema=learner.ema, optimizer=learner.optimizer, scaler=learner.scaler
        )
        how = f"{start.folder.path} holds this run: continuing" if start.automatic else "resumed"
        say(f"{how} from {start.source} at epoch {pos.epoch + 1}, step {pos.step}")
        recovery = start.source if pos.batches == 0 else None
    if not distributed.same_on_all_ranks(pos.step, ctx):
        raise ValueError(
            f"the processes found different checkpoints in {start.folder.path}; give every machine the same "
            "--out-dir, on a file system they all share"
        )
    say(
        f"training {cfg.model} (width {learner.model.build_options['width']}, {inputs.input_size}px) on "
        f"{inputs.train_images} images of {len(inputs.classes)} classes, {ctx.world_size} process(es) x batch "
        f"{cfg.batch_size}{_accumulated(cfg)} on {ctx.device}; "
        f"output in {start.folder.path}"
    )
    for note in learner.notes:  # how the network starts (fine-tuning: new classifier, frozen stages)
        say(note)
    log = RunLog(start.folder, enabled=ctx.is_main)
    writer = RunWriter(start.folder, ctx, recovery=recovery)
    return RunSession(cfg, ctx, inputs, learner, pos, start.folder, log, writer, say)


def _train_epoch(run: RunSession, stop: StopRequest) -> _EpochOutcome:
    """Train the current epoch from its first batch not yet consumed, until its end, a stop request or max_steps.

    A step takes `cfg.accumulate` batches; the epoch's last batches too few for a step are not read. Runs
    stop and save only between steps, so a resumed run starts on a step's first batch.
    """
    cfg, ctx, inputs, pos = run.cfg, run.ctx, run.inputs, run.pos
    inputs.sampler.set_epoch(pos.epoch, start=pos.batches * cfg.batch_size)
    inputs.samples.set_epoch(pos.epoch)
    run.learner.model.train()
    started, images_seen, stopped_by, group = time.perf_counter(), 0, None, []
    per_epoch = inputs.steps_per_epoch * cfg.accumulate
    bar = tqdm(
        itertools.islice(inputs.loader, max(per_epoch - pos.batches, 0)),
        total=per_epoch,
        initial=pos.batches,
        desc=f"epoch {pos.epoch + 1}/{cfg.epochs}",
        disable=not (ctx.is_main and cfg.progress),
        dynamic_ncols=True,
        leave=False,
    )
    for batch in bar:
        pos.skipped += batch.skipped
        pos.batches += 1
        group.append(batch)
        if len(group) < cfg.accumulate:
            continue
        batches, group = kept_batches(group, ctx), []
        if not batches:
            continue
        lr = inputs.lr_at(pos.step)
        set_learning_rate(run.learner.optimizer, lr)
        probed = cfg.log_every > 0 and pos.step % cfg.log_every == 0
        sync = train_step(run.learner, batches, run.recipe, step=pos.step, probed=probed, stop_requested=stop.requested)
        if sync.diverged:
            raise TrainingDiverged(_divergence(run, sync))
        pos.took_step(sync.loss)
        images_seen += sum(len(b.targets) for b in batches) * ctx.world_size
        rate = images_seen / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{sync.loss:.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}", refresh=False)
        run.log.step(pos.step, epoch=pos.epoch + 1, record=probed, **sync.scalars(lr, probed=probed))
        if sync.stop or pos.step == cfg.max_steps:
            stopped_by = stop.reason if sync.stop else StopReason.MAX_STEPS
            break
        if cfg.checkpoint_every and pos.step % cfg.checkpoint_every == 0:
            run.save()
    bar.close()
    return _EpochOutcome(stopped_by, started, time.perf_counter() - started, images_seen)


def _divergence(run: RunSession, sync: StepSync) -> str:
    """What TrainingDiverged says of a step that was not applied: the quantity, the step, the usual fixes."""
    lr = run.learner.optimizer.param_groups[0]["lr"]
    where = {"step": run.pos.step, "epoch": run.pos.epoch, "lr": lr, "cfg": run.cfg, "out_dir": run.out_dir}
    return divergence_message(loss=sync.loss, grad_norm=sync.grad_norm, **where)


def _end_epoch(run: RunSession, epoch: _EpochOutcome) -> None:
    """Evaluate the weight average when due, print and log the epoch's record, write last.pt (and best.pt)."""
    cfg, ctx, pos = run.cfg, run.ctx, run.pos
    evaluated = (pos.epoch + 1) % cfg.eval_every == 0 or pos.epoch + 1 == cfg.epochs
    scores = _validate(run) if evaluated else {}
    top1, top5 = run.errors if evaluated else (None, None)
    record = {
        "epoch": pos.epoch + 1,
        "epochs": cfg.epochs,
        "step": pos.step,
        "train_loss": pos.train_loss,
        "val_top1_error": top1,
        "val_top5_error": top5,
        "lr": run.inputs.lr_at(max(pos.step - 1, 0)),
        "images_per_s": epoch.images_seen / epoch.train_time,  # training only, evaluation excluded
        "train_time_s": epoch.train_time,
        "epoch_time_s": time.perf_counter() - epoch.started,
        "skipped_images": int(distributed.all_sum(torch.tensor([pos.skipped]), ctx).item()),
        **scores,
    }
    run.say(format_epoch(record))
    run.log.epoch(record)
    if evaluated:
        run.save_model(record)
    improved = pos.finish_epoch(top1)
    run.save()
    if improved:
        run.save_best()


def _validate(run: RunSession) -> dict[str, float]:
    """Validate the evaluated network, setting `run.errors`. A multi-label run's errors are 100 - mAP and
    100 - exact match (%), so the best model is the best by mAP; its scores are returned for the epoch record
    and the per-class thresholds tuned on this validation go onto the network (its card: model folder,
    checkpoints), each time, so that every saved model carries the thresholds of its own predictions. A
    single-label run's temperature and unknown-image threshold are fitted on this validation's logits and go
    onto the network likewise (its card: the model folder)."""
    how = {"ctx": run.ctx, "channels_last": run.cfg.channels_last, "autocast": run.learner.autocast}
    if run.inputs.label_mode != "multi":
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        top1, top5, balanced = validation_errors(run.learner.evaluated, run.inputs.val_batches, **how, keep=kept)
        run.errors = (top1, top5)
        _calibrate(run, kept)
        return {"val_balanced_accuracy": balanced}
    scores = multilabel_validation(run.learner.evaluated, run.inputs.val_batches, **how)
    run.learner.describe_labels("multi", tuple(scores.thresholds))
    run.errors = (100 - scores.map, 100 - scores.exact_match)
    return {"val_map": scores.map, "val_exact_match": scores.exact_match}


def _calibrate(run: RunSession, kept: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Fit the temperature and unknown-image threshold on the validation's logits, onto the evaluated network."""
    try:
        fitted = fit_on_logits(kept, classes=run.learner.evaluated.num_classes, ctx=run.ctx)
    except ValueError as err:  # a degenerate validation set: the run goes on, its model uncalibrated
        run.say(f"note: no calibration fitted on this validation ({err})")
        fitted = (None, None)
    run.learner.describe_calibration(*fitted)


def _save_stopped(run: RunSession, stopped_by: StopReason) -> None:
    """Write last.pt at the step the run stopped at, to resume from there."""
    run.save()
    run.say(f"stopped by {stopped_by} at step {run.pos.step} (epoch {run.pos.epoch + 1}); checkpoint {run.folder.last}")


def _report(run: RunSession) -> None:
    """The final console line: the last evaluation (the last epoch is always evaluated)."""
    cfg, pos = run.cfg, run.pos
    top1, top5 = run.errors
    if run.inputs.label_mode == "multi":  # the errors are 100 - mAP and 100 - exact match
        scores = (
            f"final val mAP {100 - top1:.2f}%, exact match {100 - top5:.2f}%; best mAP {100 - pos.best_top1_error:.2f}%"
        )
    else:
        scores = (
            f"final val top-1 accuracy {100 - top1:.2f}% (error {top1:.2f}%), top-5 accuracy {100 - top5:.2f}%; "
            f"best top-1 error {pos.best_top1_error:.2f}%"
        )
    run.say(f"done: {cfg.epochs} epochs, {pos.step} steps; {scores}; checkpoints, metrics and curves in {run.out_dir}")


def _silent(line: str) -> None:
    """The console of ranks other than 0."""


def _accumulated(cfg: TrainConfig) -> str:
    """How many batches make a step, for the start line (nothing when one does)."""
    return f" x {cfg.accumulate} accumulated" if cfg.accumulate > 1 else ""
