"""The one writer of a run folder: last / previous / best, the model folder, and what a failed write says.

Only rank 0 writes; every write is atomic, and one that fails stops every rank with a
`CheckpointWriteError` naming the file it left intact and how to go on, so no process trains on
without its checkpoints. The file names are weights.runfolder's; the checkpoint's contents are
checkpoint.py's (`training_state`).

`last.pt` is written at each epoch end, every `--checkpoint-every` steps and when a run stops.
Before `last.pt` replaces an epoch end's checkpoint, that checkpoint becomes `previous.pt` (a hard
link, no copy), so that the folder always holds a recovery copy from the last epoch end before the
latest position. `best.pt` is written at an epoch end whose validation improved on every earlier one.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet.atomic import atomic_write
from inceptionnet.models import Preprocessing
from inceptionnet.training import distributed
from inceptionnet.training.distributed import Context
from inceptionnet.training.faults import CheckpointWriteError
from inceptionnet.weights import save_model_folder
from inceptionnet.weights.runfolder import PREVIOUS, RunFolder

# The fields of an epoch record (runlog) that describe the weights written with it.
RECORD_FIELDS = ("epoch", "step", "val_top1_error", "val_top5_error")
# The scores beside them: a single-label run's records have the first, a multi-label run's the other two.
OTHER_METRICS = ("val_balanced_accuracy", "val_map", "val_exact_match")


class RunWriter:
    """Writes a run's files into its folder, on rank 0 of `ctx` (every rank calls it alike).

    `recovery`: the epoch-end checkpoint that becomes previous.pt when last.pt is next written (None:
    keep previous.pt as it is), i.e. the checkpoint the run continued from when it continued from an
    epoch end.
    """

    def __init__(self, folder: RunFolder, ctx: Context, *, recovery: Path | None = None) -> None:
        self.folder, self.ctx, self.recovery = folder, ctx, recovery

    def last(self, state: Callable[[], dict[str, Any]], *, at_epoch_end: bool) -> None:
        """Write last.pt from `state()` (called on rank 0 only), keeping the epoch end it replaces as previous.pt."""

        def write() -> None:
            if self.recovery is not None:
                keep_previous(self.recovery, self.folder)
            save(state(), self.folder.last)

        self._on_rank_0(write, self.folder.last)
        self.recovery = self.folder.last if at_epoch_end else None

    def best(self, state: Callable[[], dict[str, Any]]) -> None:
        """Write best.pt from `state()` (called on rank 0 only)."""
        self._on_rank_0(lambda: save(state(), self.folder.best), self.folder.best)

    def model(self, network: nn.Module, **details: Any) -> None:
        """Write the model folder: `network` just evaluated, as save_run_model describes (`details`)."""

        def write() -> None:
            try:
                save_run_model(self.folder, network, **details)
            except OSError as err:
                raise CheckpointWriteError(write_failure(self.folder.model, err)) from err

        self._on_rank_0(write, self.folder.model)

    def _on_rank_0(self, write: Callable[[], None], target: Path) -> None:
        failure = None
        if self.ctx.is_main:
            try:
                write()
            except CheckpointWriteError as err:
                failure = err
        if distributed.any_rank(failure is not None, self.ctx):
            raise failure or CheckpointWriteError(f"rank 0 could not write {target} (its error says why)")


def save_run_model(
    folder: RunFolder,
    model: nn.Module,
    *,
    class_names: Sequence[str],
    preprocessing: Preprocessing,
    record: Mapping[str, Any],
    averaged: bool,
    command: str | None = None,
    dataset: str | None = None,
) -> Path:
    """Write `model` (the network just evaluated, unwrapped) as the run's model folder; return its path.

    A run is a model: `create_model(weights=RUN)`, `eval`, `predict` and `export` take the folder as it is.
    `class_names`: the training classes, in output order; `preprocessing`: the transform the run validated
    with; `record`: the epoch's record (its epoch, step and validation scores are kept); `averaged`: whether
    `model` is the weight average; `command` (the train command line) and `dataset`: for README.md only.
    """
    missing = [k for k in RECORD_FIELDS if k not in record]
    if missing:
        raise ValueError(f"the epoch record lacks {missing}; pass the record that the evaluation of `model` wrote")
    return save_model_folder(
        folder.model,
        model,
        class_names=class_names,
        preprocessing=preprocessing,
        metrics={k: record[k] for k in (*RECORD_FIELDS, *OTHER_METRICS) if k in record},
        weights="average" if averaged else "raw",
        dataset=dataset,
        command=command,
    )


def save(payload: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically: a crash at any moment leaves either the old file or the new one.

    A write that fails (disk full, permission denied) raises CheckpointWriteError; the file at
    `path`, if any, is left as it was.
    """
    path = Path(path)
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as err:
        raise CheckpointWriteError(write_failure(path, err)) from err


def keep_previous(source: Path, folder: RunFolder) -> None:
    """Make the folder's previous.pt a copy of the checkpoint `source`, atomically (a no-op if it is that
    file, or if `source` is gone).

    A hard link under a temporary name, renamed over previous.pt, copies nothing; where the file
    system has no hard links (or `source` is on another one) the bytes are copied.
    """
    target = folder.previous
    if not source.exists() or (target.exists() and target.samefile(source)):
        return
    link = folder.path / f".{PREVIOUS}.link.tmp"
    try:
        link.unlink(missing_ok=True)
        try:
            os.link(source, link)
        except OSError:
            with open(source, "rb") as src:
                atomic_write(target, lambda f: shutil.copyfileobj(src, f))
            return
        os.replace(link, target)
    except OSError as err:
        link.unlink(missing_ok=True)
        raise CheckpointWriteError(write_failure(target, err)) from err


def write_failure(path: Path, err: OSError) -> str:
    """What failed, why, what is left, and how to go on."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space on the disk of {path.parent}"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {path.parent} writable"
    else:
        fix = "fix the cause"
    kept = f"{path} is as it was before this write" if path.exists() else f"no earlier {path.name} exists there"
    return (
        f"could not write {path}: {err.strerror or err}; {kept}. "
        f"The run stopped: {fix}, then run the same command again (or --resume {path.parent}) to continue from "
        f"the last checkpoint written"
    )
