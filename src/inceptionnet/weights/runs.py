"""Training runs as weights: a run folder, and the training checkpoints in it (read without the training code).

A run folder (`inceptionnet train --out-dir RUN`) holds `model/` (a model folder, artifact.py: the
weights the run evaluated last), `best.pt` and `last.pt`. As weights it stands for its model
folder, else best.pt, else last.pt. A training checkpoint is a `torch.save` dict read with
`weights_only=True`; as weights it gives its weight average when it has one (the weights training
evaluated and reported), else its raw weights, without the auxiliary head, and the network's
name, build options, class names and the run's evaluation preprocessing (its "preprocessing" entry
where the checkpoint has one, else the network's default at the run's input size).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from inceptionnet.card import ModelCard
from inceptionnet.models import Preprocessing, get_entry
from inceptionnet.weights.artifact import is_model_folder
from inceptionnet.weights.record import completed_card, known_model
from inceptionnet.weights.tags import WeightsError

RUN_MODEL = "model"  # the model folder inside a run folder
RUN_CHECKPOINTS = ("best.pt", "last.pt")  # in order of preference
_CHECKPOINT_KEYS = {"format", "config", "classes", "model"}
_AVERAGE_PREFIX = "module."  # the weight average's keys: "module.<our key>", beside its own counters


def run_weights(folder: Path) -> Path:
    """What a run folder stands for as weights: its model folder, else best.pt, else last.pt."""
    if is_model_folder(folder / RUN_MODEL):
        return folder / RUN_MODEL
    for name in RUN_CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(
        f"{folder} holds no trained network: no {RUN_MODEL}/ model folder, no {' and no '.join(RUN_CHECKPOINTS)}. "
        "Pass a run folder whose training finished at least one evaluation, a checkpoint file, or a model folder"
    )


def is_training_checkpoint(obj: Any) -> bool:
    """Whether a loaded .pt file is one of our training checkpoints (recognised by its keys)."""
    return isinstance(obj, dict) and obj.keys() >= _CHECKPOINT_KEYS and isinstance(obj.get("config"), dict)


def read_training_checkpoint(payload: dict[str, Any], *, source: str) -> tuple[dict[str, torch.Tensor], ModelCard, str]:
    """The evaluated weights of a training checkpoint (the weight average if any), its network's card, and
    which weights they are ("average" or "raw")."""
    average = payload.get("ema")
    if average:
        state = {k.removeprefix(_AVERAGE_PREFIX): v for k, v in average.items() if k.startswith(_AVERAGE_PREFIX)}
    else:
        state = dict(payload["model"])
    state = {k: v for k, v in state.items() if not k.startswith("aux.")}  # the auxiliary head trains only
    name, options = _network(payload, source=source)
    described = {
        "model_name": name,
        "model_options": options,
        "preprocessing": _preprocessing(payload, name).to_dict(),
        "class_names": payload["classes"],
    }
    return state, completed_card(described, state, source=source), "average" if average else "raw"


def _preprocessing(payload: dict[str, Any], name: str) -> Preprocessing:
    """The transform the run validated with: recorded in the checkpoint, else the network's default at the
    run's input size (what a run from scratch uses)."""
    if isinstance(payload.get("preprocessing"), dict):
        return Preprocessing.from_dict(payload["preprocessing"])
    pre = get_entry(name).preprocessing
    size = payload["config"].get("input_size")
    return dataclasses.replace(pre, input_size=int(size)) if size else pre


def _network(payload: dict[str, Any], *, source: str) -> tuple[str, dict[str, Any]]:
    """The network's name and build options, without the auxiliary head.

    Checkpoints that predate "model_name" and "model_options" get them from their configuration.
    """
    if "model_name" in payload:
        name, options = payload["model_name"], dict(payload["model_options"])
    else:
        config = payload["config"]
        name = config["model"]
        options = {"num_classes": len(payload["classes"]), "width": config.get("width") or 1.0}
        options["drop_rate"] = config.get("drop_rate", 0.2)
        if config.get("residual_scale") is not None:
            options["scales"] = (config["residual_scale"],) * 3
    options["aux_logits"] = False
    return known_model(name, source=source), options
