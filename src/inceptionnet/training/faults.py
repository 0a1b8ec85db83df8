"""What stops a training run early: a termination signal (saved, resumable), a diverged loss (refused)
or a checkpoint that could not be written.

`StopRequest` turns SIGTERM (schedulers, `kill`, torchrun forwarding a stop) and SIGINT (Ctrl-C)
into a flag; the training loop checks it after each optimiser step, agrees on it across ranks,
writes a checkpoint and returns. `TrainingDiverged` is raised before a step whose loss or
gradient is NaN or infinite is applied, so no checkpoint ever holds the diverged weights.
`CheckpointWriteError` stops the run when a checkpoint cannot be written (disk full, permission
denied), with the previous checkpoint intact.
"""

from __future__ import annotations

import enum
import math
import signal
import threading
from pathlib import Path
from types import FrameType

from inceptionnet.training.config import TrainConfig
from inceptionnet.weights.runfolder import LAST


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; the last checkpoint was left as it was."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the file it would have replaced was left as it was."""


def divergence_message(
    *, loss: float, grad_norm: float, step: int, epoch: int, lr: float, cfg: TrainConfig, out_dir: Path
) -> str:
    """Name the step and the quantity that went non-finite, and the usual fixes."""
    what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {grad_norm}"
    last = out_dir / LAST
    fixes = [
        f"a lower --lr (now {cfg.lr})",
        f"a linear warm-up (--warmup-epochs 1 or more, now {cfg.warmup_epochs})",
        f"gradient clipping (--clip-grad-norm 2, now {cfg.clip_grad_norm})",
    ]
    if cfg.precision == "fp16":
        fixes.append("--precision bf16 or fp32 instead of fp16")
    if last.exists():
        kept, then = f"the last good checkpoint {last} is untouched", f"continue with --resume {out_dir} and"
    else:
        kept, then = "no checkpoint was written yet", "start again with"
    return (
        f"training diverged: {what} at step {step} (epoch {epoch + 1}, lr {lr:.4g}); {kept}. "
        f"Likely fixes: {'; '.join(fixes)}. Then {then} the changed options."
    )


class StopReason(enum.StrEnum):
    """Why a run stopped before its last epoch, and the exit status `inceptionnet train` gives for it.

    A stop by a signal writes a checkpoint and exits with 128 + the signal's number, as a process
    killed by it would report (schedulers and torchrun read it so); reaching `--max-steps` is a
    normal end (0). SIGNAL: another process of the run was signalled, this one stopped with it.
    """

    SIGTERM = "SIGTERM"
    SIGINT = "SIGINT"
    SIGNAL = "signal"
    MAX_STEPS = "max_steps"

    @property
    def by_signal(self) -> bool:
        return self is not StopReason.MAX_STEPS

    @property
    def exit_status(self) -> int:
        if self is StopReason.MAX_STEPS:
            return 0
        return 128 + (signal.SIGINT if self is StopReason.SIGINT else signal.SIGTERM)


class StopRequest:
    """SIGTERM / SIGINT handlers that only raise a flag: the loop saves and exits at the next step boundary.

    A second Ctrl-C interrupts at once (KeyboardInterrupt). Handlers can only be installed from the
    main thread; elsewhere signals keep their handlers.
    `restore()` puts the previous handlers back.
    """

    def __init__(self) -> None:
        self.requested = 0.0  # a float, so it travels in the per-step all-reduce with the loss
        self.reason = StopReason.SIGNAL  # until a signal of this process names it
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.requested, self.reason = 1.0, StopReason(signal.Signals(signum).name)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
