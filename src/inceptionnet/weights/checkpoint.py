"""The training checkpoint format: its entries, the one reader, and what a checkpoint says about its
network.

Training writes checkpoints (training/writer.py, atomically; training/checkpoint.py builds and
restores the training state); every command that takes a run as weights reads them (resolve.py).
Both go through this module, so the format is defined once, below the training code that writes
it. The names of a run folder's checkpoints are runfolder.py's.

A checkpoint is a `torch.save` of plain dicts, tensors and numbers (`KEYS`), read back with
`torch.load(weights_only=True)`, so reading one never runs code. As weights a checkpoint gives
the network training evaluated: its weight average when it has one, else its raw weights, without
the auxiliary head, built from its "model_name" and "model_options", with its class names and its
evaluation preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inceptionnet.card import ModelCard
from inceptionnet.weights.record import completed_card
from inceptionnet.weights.tags import WeightsError

FORMAT = 1

# A checkpoint's entries in the order they are written: torch.save keeps a dict's order, so the same
# training state gives the same bytes.
KEYS = (
    "format",  # FORMAT
    "version",  # the package version that wrote it
    "torch_version",
    "config",  # the resolved TrainConfig as a dict
    "classes",  # the class names, in output order
    "model_name",  # the network, and every option it was built with: create_model(name, **options)
    "model_options",
    "preprocessing",  # the transform the run validates with (a Preprocessing as a dict)
    "label_mode",  # "single" or "multi" (a sigmoid per class)
    "thresholds",  # multi-label: each class's threshold, tuned at the last validation; else None
    "position",  # the run position (training/state.py RunPosition as a dict)
    "world_size",  # the number of processes that trained it
    "model",  # the raw weights, auxiliary head included
    "ema",  # the weight average: "module.<key>" for each weight, beside its own counters; None without one
    "optimizer",
    "scaler",  # the fp16 loss scaler; None without one
)
_AVERAGE_PREFIX = "module."
# What a checkpoint needs to stand for its network: every checkpoint this version writes has them;
# files of earlier development versions may lack some.
_NETWORK_KEYS = ("classes", "model_name", "model_options", "preprocessing", "model", "ema")


def checkpoint_payload(**entries: Any) -> dict[str, Any]:
    """A checkpoint's contents: `entries` (every key of KEYS but "format") in the order of KEYS, of this FORMAT."""
    given, expected = set(entries), set(KEYS[1:])
    if given != expected:
        raise ValueError(
            f"a checkpoint needs exactly the entries {sorted(expected)}; missing {sorted(expected - given)}, "
            f"unknown {sorted(given - expected)}"
        )
    return {"format": FORMAT, **{key: entries[key] for key in KEYS[1:]}}


def is_checkpoint(obj: Any) -> bool:
    """Whether a loaded .pt file is one of our training checkpoints."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint file at `path`, tensors on the CPU; no code is unpickled (runfolder.read_checkpoint also
    takes a run folder)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not is_checkpoint(payload):
        raise WeightsError(f"{path} is not an inceptionnet training checkpoint (format {FORMAT})")
    return payload


def checkpoint_weights(payload: dict[str, Any], *, source: str) -> tuple[dict[str, torch.Tensor], ModelCard, str]:
    """The weights training evaluated (the weight average if any, else the raw weights; the auxiliary head,
    which only trains, left out), the card of their network, and which weights they are ("average" or "raw")."""
    average = payload.get("ema")
    if average:
        state = {k.removeprefix(_AVERAGE_PREFIX): v for k, v in average.items() if k.startswith(_AVERAGE_PREFIX)}
    else:
        state = payload["model"]
    state = {k: v for k, v in state.items() if not k.startswith("aux.")}
    return state, checkpoint_card(payload, state, source=source), "average" if average else "raw"


def checkpoint_card(payload: dict[str, Any], state: dict[str, torch.Tensor], *, source: str) -> ModelCard:
    """The network a checkpoint stands for: name, build options without the auxiliary head, class names and
    the preprocessing the run validated with."""
    missing = [key for key in _NETWORK_KEYS if key not in payload]
    if missing:
        raise WeightsError(
            f"{source} is a training checkpoint without {', '.join(missing)}: a development version wrote it "
            "before checkpoints recorded their network. Retrain the run, or re-save the checkpoint with those "
            'entries added as training writes them (docs/training.md, "Checkpoints, resume and faults")'
        )
    described = {
        "model_name": payload["model_name"],
        "model_options": {**payload["model_options"], "aux_logits": False},
        "preprocessing": payload["preprocessing"],
        "class_names": payload["classes"],
        "label_mode": payload.get("label_mode", "single"),  # absent from earlier checkpoints: single-label
        "thresholds": payload.get("thresholds"),
    }
    return completed_card(described, state, source=source)
