"""Where a training run stands: the position that every checkpoint saves and `--resume` restores.

Random state needs no saving: the data order, every augmentation and the dropout masks are pure
functions of (seed, epoch, step, rank), so the position alone lets a resumed run continue exactly
as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class RunPosition:
    """The run's progress. A checkpoint stores it as a plain dict of these keys (`to_dict`)."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimiser steps taken in total
    batches: int = 0  # batches consumed in the current epoch (the sampler skips them on resume)
    loss_sum: float = 0.0  # the current epoch's step losses: their sum
    losses: int = 0  # and their count
    skipped: int = 0  # unreadable images this rank skipped in the current epoch
    best_top1_error: float | None = None  # the lowest validation top-1 error so far (%)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunPosition:
        """The position a checkpoint stored; keys it lacks keep their start values."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    @property
    def train_loss(self) -> float:
        """The mean step loss of the current epoch so far."""
        return self.loss_sum / max(self.losses, 1)

    def nothing_left(self, *, epochs: int, max_steps: int | None) -> str | None:
        """Why a run at this position has nothing left to train (its epochs finished, or max_steps taken), if so."""
        if self.epoch >= epochs:
            return f"nothing to train: the run has finished its {self.epoch} epochs; pass --epochs N to train longer"
        if max_steps is not None and self.step >= max_steps:
            return (
                f"nothing to train: the run has taken {self.step} steps, --max-steps {max_steps}; pass a larger "
                "--max-steps, or none, to train on"
            )
        return None

    def took_step(self, loss: float) -> None:
        self.step += 1
        self.loss_sum += loss
        self.losses += 1

    def finish_epoch(self, top1_error: float | None) -> bool:
        """Move to the next epoch, keeping the best validation error; whether `top1_error` improved on it."""
        improved = top1_error is not None and (self.best_top1_error is None or top1_error < self.best_top1_error)
        if improved:
            self.best_top1_error = top1_error
        self.epoch += 1
        self.batches, self.loss_sum, self.losses, self.skipped = 0, 0.0, 0, 0
        return improved
