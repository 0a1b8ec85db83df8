"""A run under way: its settings, inputs, learner, position and outputs, and how rank 0 writes them.

Every write (a checkpoint, the model folder) happens on rank 0; a failed write stops every rank with
the error (CheckpointWriteError), so no process trains on without its checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from inceptionnet.data import DEMO_DATA
from inceptionnet.training import artifact, checkpoint, distributed
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.faults import CheckpointWriteError
from inceptionnet.training.inputs import TrainingInputs
from inceptionnet.training.learner import Learner
from inceptionnet.training.runlog import RunLog
from inceptionnet.training.state import RunPosition
from inceptionnet.weights.checkpoint import LAST


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


@dataclass
class RunSession:
    """A run under way: its settings, inputs, learner, position and outputs."""

    cfg: TrainConfig
    ctx: Context
    inputs: TrainingInputs
    learner: Learner
    pos: RunPosition
    out_dir: Path
    log: RunLog
    say: Callable[[str], None]  # a console line (rank 0 only)
    errors: tuple[float, float] | None = None  # top-1 and top-5 error of this invocation's last evaluation
    # The epoch-end checkpoint that becomes previous.pt when last.pt is next written (None: keep previous.pt).
    recovery: Path | None = None

    def save(self, name: str = LAST) -> None:
        """Rank 0 writes checkpoint `name`; before last.pt replaces an epoch end's checkpoint, that one
        becomes previous.pt. A failed write stops every rank with the error."""

        def write() -> None:
            if name == LAST and self.recovery is not None:
                checkpoint.keep_previous(self.recovery, self.out_dir)
            checkpoint.save(self._state(), self.out_dir / name)

        self._on_rank_0(write, self.out_dir / name)
        if name == LAST:
            self.recovery = self.out_dir / name if self.pos.batches == 0 else None

    def save_model(self, record: dict) -> None:
        """Rank 0 writes the run's model folder: the network just evaluated, with the epoch's numbers."""
        learner = self.learner

        def write() -> None:
            try:
                artifact.save_run_model(
                    self.out_dir,
                    learner.evaluated,
                    class_names=self.inputs.classes,
                    preprocessing=self.inputs.preprocessing,
                    record=record,
                    averaged=learner.ema is not None,
                    cfg=self.cfg,
                    dataset=self.cfg.data or str(DEMO_DATA),
                )
            except OSError as err:
                raise CheckpointWriteError(checkpoint.write_failure(self.out_dir / artifact.RUN_MODEL, err)) from err

        self._on_rank_0(write, self.out_dir / artifact.RUN_MODEL)

    def _on_rank_0(self, write: Callable[[], None], target: Path) -> None:
        failure = None
        if self.ctx.is_main:
            try:
                write()
            except CheckpointWriteError as err:
                failure = err
        if distributed.any_rank(failure is not None, self.ctx):
            raise failure or CheckpointWriteError(f"rank 0 could not write {target} (its error says why)")

    def _state(self) -> dict:
        learner = self.learner
        return checkpoint.training_state(
            model=learner.model,
            ema=learner.ema,
            optimizer=learner.optimizer,
            scaler=learner.scaler,
            cfg=self.cfg,
            position=self.pos,
            classes=self.inputs.classes,
            preprocessing=self.inputs.preprocessing,
            world_size=self.ctx.world_size,
        )

    def result(self, stopped_by: str | None) -> TrainResult:
        top1, top5 = self.errors if self.errors is not None else (None, None)
        pos, learner = self.pos, self.learner
        return TrainResult(
            self.out_dir, pos.epoch, pos.step, top1, top5, pos.best_top1_error, stopped_by, learner.model, learner.ema
        )
