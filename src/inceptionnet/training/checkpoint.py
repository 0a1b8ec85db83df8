"""Training checkpoints: atomic writes, safe loads, and the resume state.

A checkpoint is a `torch.save` of plain dicts, tensors and numbers, read back with
`torch.load(weights_only=True)`, so loading never runs code. It holds the model, the weight
average, the optimiser (and fp16 loss scaler), the position in training (epoch, step, the step
inside the epoch and that epoch's running totals), the best validation error, the resolved
configuration and the package version.

Random state needs no saving: the data order, every augmentation and the dropout masks are pure
functions of (seed, epoch, step, rank), so restoring the step restores them (see train.py and data.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet._version import __version__
from inceptionnet.factory import create_model
from inceptionnet.training.config import TrainConfig

FORMAT = 1
LAST = "last.pt"
BEST = "best.pt"


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """Write `payload` to `path` so that a crash at any moment leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder (same file system), are flushed to disk,
    and the file is renamed over the target (atomic on POSIX and Windows); the folder is synced so
    the rename itself survives a power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (meaning its last.pt)."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; pass a checkpoint file or a run folder that holds {LAST}")
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_atomic` (tensors on the CPU); no code is unpickled."""
    path = resolve(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an inceptionnet training checkpoint (format {FORMAT})")
    return payload


def training_state(
    *,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    cfg: TrainConfig,
    position: dict[str, Any],
    classes: list[str],
) -> dict[str, Any]:
    """Everything `restore` needs to continue bit for bit. `model` must be the unwrapped network."""
    return {
        "format": FORMAT,
        "version": __version__,
        "torch_version": str(torch.__version__),
        "config": cfg.to_dict(),
        "classes": classes,
        "position": position,
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
    }


def restore(
    payload: dict[str, Any],
    *,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, Any]:
    """Load a checkpoint's state into freshly built objects (strictly); return its position."""
    model.load_state_dict(payload["model"])
    if ema is not None:
        if payload["ema"] is None:
            raise ValueError("the checkpoint has no weight average; resume with --ema-decay 0")
        ema.load_state_dict(payload["ema"])
    optimizer.load_state_dict(payload["optimizer"])
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    return dict(payload["position"])


def model_from_checkpoint(path: str | Path, *, averaged: bool = True) -> nn.Module:
    """The trained network of a checkpoint, in eval mode: the weight average if there is one (as evaluated)."""
    payload = load(path)
    cfg = TrainConfig.from_dict(payload["config"])
    model = create_model(cfg.model, num_classes=len(payload["classes"]), width=cfg.width, drop_rate=cfg.drop_rate)
    if averaged and payload["ema"] is not None:
        state = {k.removeprefix("module."): v for k, v in payload["ema"].items() if k.startswith("module.")}
    else:
        state = payload["model"]
    # The auxiliary head exists only for training; the evaluated network has none.
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux.")})
    return model.eval()
