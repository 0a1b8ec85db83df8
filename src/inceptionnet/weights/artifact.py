"""Model folders: a network's weights with everything needed to rebuild and use it, in the hub's layout.

A model folder holds two files, the layout of a Hugging Face model repository:

- `model.safetensors`: the state dict in our layout, without the auxiliary head (inference never
  uses it), its header carrying the build record (record.py) so that the file also works alone;
- `config.json`: "format": "inceptionnet", the package version, `model_name`, `model_options` (every
  build option), `class_names`, `preprocessing`, `metrics` (the validation numbers of these
  weights, for a training run's folder), `weights` ("average": the weight average that training
  evaluated, or "raw"), and timm's fields for other tools (`num_classes`, `input_size`, `mean`,
  `std`, `crop_pct`, `interpolation`, `label_names`).

Every training run writes one, RUN/model/, with the weights it evaluated last. `create_model(weights=FOLDER)`
rebuilds the network; uploaded to the hub, the folder loads with `weights="hf-hub:ORG/NAME"`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import nn

from inceptionnet._version import __version__
from inceptionnet.atomic import atomic_write
from inceptionnet.models import Preprocessing
from inceptionnet.weights.files import read_safetensors
from inceptionnet.weights.record import (
    FORMAT_NAME,
    ModelRecord,
    checked_class_names,
    known_model,
    normalised_options,
    preprocessing_from_dict,
    record_metadata,
)
from inceptionnet.weights.tags import WeightsError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_AUX = "aux."


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder holding config.json (a model folder, complete or not)."""
    return (Path(path) / CONFIG_FILE).is_file()


def save_model_folder(
    folder: str | os.PathLike[str],
    model: nn.Module,
    *,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    metrics: Mapping[str, Any] | None = None,
    weights: str | None = None,
) -> Path:
    """Write `model` as a model folder (created if needed); returns the folder.

    `class_names` and `preprocessing` default to the network's own (`model.class_names`,
    `model.preprocessing`); `metrics` are the validation numbers of these weights and `weights` says
    which weights they are ("average" or "raw"). Each file is written atomically, config.json last,
    so a folder whose config.json is complete has the weights it describes.
    """
    folder = Path(folder)
    names = class_names if class_names is not None else getattr(model, "class_names", None)
    if isinstance(names, str):
        raise ValueError(f"class_names must be a list of names, one per output, not the string {names!r}")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith(_AUX)}
    num_classes = state["head.fc.weight"].shape[0] if "head.fc.weight" in state else 0
    if names is not None and len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a network with {num_classes} outputs; pass one name per output")
    options = {**model.build_options, "aux_logits": False}
    record = ModelRecord(
        model_name=model.model_name,
        options=options,
        preprocessing=preprocessing or model.preprocessing,
        class_names=tuple(names) if names is not None else None,
        metrics=dict(metrics) if metrics is not None else None,
        weights=weights,
    )
    meta = record_metadata(record, weights_name=getattr(model, "weights_name", None))
    atomic_write(folder / WEIGHTS_FILE, safetensors.torch.save(state, metadata=meta))
    config = model_config(record, num_classes=num_classes, in_chans=getattr(model, "in_chans", 3))
    atomic_write(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return folder


def model_config(record: ModelRecord, *, num_classes: int, in_chans: int) -> dict[str, Any]:
    """The config.json of a model folder: our record, then timm's fields."""
    pre = record.preprocessing or Preprocessing()
    names = list(record.class_names) if record.class_names is not None else None
    return {
        "format": FORMAT_NAME,
        "version": __version__,
        "model_name": record.model_name,
        "model_options": record.options,
        "class_names": names,
        "preprocessing": asdict(pre),
        "metrics": record.metrics,
        "weights": record.weights,
        # timm's pretrained-config fields, for tools that read them
        "num_classes": num_classes,
        "input_size": [in_chans, pre.input_size, pre.input_size],
        "mean": list(pre.mean),
        "std": list(pre.std),
        "crop_pct": pre.crop_fraction,
        "interpolation": pre.interpolation,
        "label_names": names,
    }


def read_model_folder(folder: str | os.PathLike[str], *, source: str | None = None) -> tuple[dict, ModelRecord]:
    """The state dict and the record of a model folder; a WeightsError names what is missing or wrong."""
    folder = Path(folder)
    source = source or str(folder)
    config = _read_config(folder, source=source)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsError(f"{source} has {CONFIG_FILE} but no {WEIGHTS_FILE}; copy the whole model folder")
    state, _ = read_safetensors(weights)
    try:
        record = ModelRecord(
            model_name=known_model(config["model_name"], source=source),
            options=normalised_options(config["model_options"]),
            preprocessing=preprocessing_from_dict(config["preprocessing"]),
            class_names=checked_class_names(config.get("class_names"), source=source),
            metrics=config.get("metrics"),
            weights=config.get("weights"),
        )
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, WeightsError):
            raise
        raise WeightsError(f"{source}/{CONFIG_FILE} lacks or garbles {err}; write the folder again") from None
    return state, record


def _read_config(folder: Path, *, source: str) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WeightsError(f"{source}: cannot read {CONFIG_FILE} ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        found = config.get("architecture") if isinstance(config, dict) else None
        hint = f" (it describes {found!r}, as timm's do)" if found else ""
        raise WeightsError(
            f'{source}/{CONFIG_FILE} is not an inceptionnet model folder{hint}: it lacks "format": "{FORMAT_NAME}". '
            "For timm's published weights use a tag (inception_v4:tf_in1k); write model folders with save_model_folder"
        )
    return config
