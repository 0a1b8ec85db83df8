"""A run under way: its settings, inputs, learner, position and outputs, and what a run returns.

Its files are written by one RunWriter (writer.py), on rank 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from inceptionnet.data import DEMO_DATA
from inceptionnet.training import checkpoint
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.faults import StopReason
from inceptionnet.training.inputs import TrainingInputs
from inceptionnet.training.learner import Learner
from inceptionnet.training.presets import train_command
from inceptionnet.training.runlog import RunLog
from inceptionnet.training.state import RunPosition
from inceptionnet.training.step import StepRecipe
from inceptionnet.training.writer import RunWriter
from inceptionnet.weights.runfolder import RunFolder


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    out_dir: Path
    epoch: int  # epochs finished
    step: int  # optimiser steps taken in total
    val_top1_error: float | None  # of the last evaluation (in %), None if none ran
    val_top5_error: float | None
    best_top1_error: float | None
    stopped_by: StopReason | None  # why training stopped before the last epoch; None: it did not
    model: nn.Module  # the trained network (unwrapped)
    averaged: nn.Module | None  # its weight average (a WeightAverage), if enabled

    @property
    def exit_status(self) -> int:
        """What `inceptionnet train` exits with: 0, or 128 + the number of the signal that stopped it."""
        return self.stopped_by.exit_status if self.stopped_by is not None else 0


@dataclass
class RunSession:
    """A run under way: its settings, inputs, learner, position and outputs."""

    cfg: TrainConfig
    ctx: Context
    inputs: TrainingInputs
    learner: Learner
    pos: RunPosition
    folder: RunFolder
    log: RunLog
    writer: RunWriter
    say: Callable[[str], None]  # a console line (rank 0 only)
    errors: tuple[float, float] | None = None  # top-1 and top-5 error of this invocation's last evaluation

    @property
    def out_dir(self) -> Path:
        return self.folder.path

    @property
    def recipe(self) -> StepRecipe:
        """What each of the run's steps takes (step.train_step)."""
        return StepRecipe(self.cfg, self.ctx, self.inputs.class_weights)

    def save(self) -> None:
        """Write last.pt at the run's position."""
        self.writer.last(self._state, at_epoch_end=self.pos.batches == 0)

    def save_best(self) -> None:
        self.writer.best(self._state)

    def save_model(self, record: dict[str, Any]) -> None:
        """Write the run's model folder: the network just evaluated, with the epoch's numbers."""
        self.writer.model(
            self.learner.evaluated,
            class_names=self.inputs.classes,
            preprocessing=self.inputs.preprocessing,
            record=record,
            averaged=self.learner.ema is not None,
            command=train_command(self.cfg),
            dataset=self.cfg.data or str(DEMO_DATA),
        )

    def _state(self) -> dict[str, Any]:
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

    def result(self, stopped_by: StopReason | None) -> TrainResult:
        top1, top5 = self.errors if self.errors is not None else (None, None)
        return TrainResult(
            out_dir=self.out_dir,
            epoch=self.pos.epoch,
            step=self.pos.step,
            val_top1_error=top1,
            val_top5_error=top5,
            best_top1_error=self.pos.best_top1_error,
            stopped_by=stopped_by,
            model=self.learner.model,
            averaged=self.learner.ema,
        )
