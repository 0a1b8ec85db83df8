"""Training checkpoints: the resume state, and restoring it.

The format (entries, the reader) is inceptionnet.weights.checkpoint, which every command
that takes a run as weights reads too. A checkpoint holds the model, the weight average, the
optimiser (and fp16 loss scaler), the run position (state.RunPosition as a dict: epoch, step,
batches done in the epoch and that epoch's running totals, the best validation error), the class
names, the network's name and build options, the resolved configuration and the package version
and the number of processes that trained it.

Which checkpoints a run folder holds and when each is written: writer.py, the run's one writer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from inceptionnet._version import __version__
from inceptionnet.models import Preprocessing
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.state import RunPosition
from inceptionnet.weights.checkpoint import checkpoint_payload


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
