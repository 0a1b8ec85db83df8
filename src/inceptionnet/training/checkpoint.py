"""Training checkpoints: atomic writes, the resume state, and restoring it.

The format (file names, entries, the reader) is inceptionnet.weights.checkpoint, which every command
that takes a run as weights reads too. A checkpoint holds the model, the weight average, the
optimiser (and fp16 loss scaler), the run position (state.RunPosition as a dict: epoch, step,
batches done in the epoch and that epoch's running totals, the best validation error), the class
names, the network's name and build options, the resolved configuration and the package version
and the number of processes that trained it.

A run folder holds `last.pt` (the latest), `previous.pt` (its recovery copy: the checkpoint of the
last epoch end before `last.pt`'s position, kept in case `last.pt` turns out bad) and `best.pt`
(the epoch with the lowest validation error). Every write is atomic, and one that fails raises
`CheckpointWriteError` with the file it left intact.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet._version import __version__
from inceptionnet.atomic import atomic_write
from inceptionnet.models import Preprocessing
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.faults import CheckpointWriteError
from inceptionnet.training.state import RunPosition
from inceptionnet.weights.checkpoint import PREVIOUS, checkpoint_payload


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


def keep_previous(source: Path, out_dir: Path) -> None:
    """Make `out_dir`/previous.pt a copy of the checkpoint `source`, atomically (a no-op if it is that
    file, or if `source` is gone).

    A hard link under a temporary name, renamed over previous.pt, copies nothing; where the file
    system has no hard links (or `source` is on another one) the bytes are copied.
    """
    target = out_dir / PREVIOUS
    if not source.exists() or (target.exists() and target.samefile(source)):
        return
    link = out_dir / f".{PREVIOUS}.link.tmp"
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


def describe(payload: dict[str, Any]) -> str:
    """A checkpoint in a few words, for messages: its network and position ("inception_v3 after epoch 2, step 6")."""
    pos = RunPosition.from_dict(payload["position"])
    where = f"after epoch {pos.epoch}" if pos.batches == 0 else f"in epoch {pos.epoch + 1}"
    return f"{payload['config']['model']} {where}, step {pos.step}"


def training_state(
    *,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    cfg: TrainConfig,
    position: RunPosition,
    classes: list[str],
    preprocessing: Preprocessing,
    world_size: int = 1,
) -> dict[str, Any]:
    """Everything `restore` needs to continue bit for bit. `model` must be the unwrapped network.

    "model_name" and "model_options" rebuild the network exactly: `create_model(name, **options)`;
    "preprocessing" is the transform the run validates with (fine-tuning keeps the weights' own), so
    that the checkpoint used as weights prepares images as the run did. `world_size`: the number of
    processes training the run (the global batch and the data order depend on it).
    """
    return checkpoint_payload(
        version=__version__,
        torch_version=str(torch.__version__),
        config=cfg.to_dict(),
        classes=classes,
        model_name=cfg.model,
        model_options=dict(model.build_options),
        preprocessing=dataclasses.asdict(preprocessing),
        label_mode=model.label_mode,
        thresholds=list(model.thresholds) if model.thresholds is not None else None,
        position=position.to_dict(),
        world_size=world_size,
        model=model.state_dict(),
        ema=ema.state_dict() if ema is not None else None,
        optimizer=optimizer.state_dict(),
        scaler=scaler.state_dict() if scaler is not None else None,
    )


def restore(
    payload: dict[str, Any],
    *,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> RunPosition:
    """Load a checkpoint's state into freshly built objects (strictly); return its position."""
    model.load_state_dict(payload["model"])
    if ema is not None:
        if payload["ema"] is None:
            raise ValueError("the checkpoint has no weight average; resume with --ema-decay 0")
        ema.load_state_dict(payload["ema"])
    optimizer.load_state_dict(payload["optimizer"])
    thresholds = payload.get("thresholds")  # those of the last validation, until the next one
    for network in (model, ema.module if ema is not None else None):
        if network is not None and thresholds is not None:
            network.thresholds = tuple(thresholds)
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    return RunPosition.from_dict(payload["position"])
