"""Model folders: a network's weights with everything needed to rebuild and use it, in the hub's layout.

A model folder holds three files, the layout of a Hugging Face model repository:

- `model.safetensors`: the state dict in our layout, without the auxiliary head (inference never
  uses it), its header carrying the network's card (record.py) so that the file also works alone;
- `config.json`: "format": "inceptionnet", the package version, the network's card (`card.to_dict()`:
  `model_name`, `model_options` (every build option), `num_classes`, `in_chans`, `class_names`,
  `preprocessing`, `label_mode`, `thresholds`, `metrics` (the validation numbers of these weights, for a
  training run's folder), ...), `weights` ("average": the weight average that training evaluated, or
  "raw"), and timm's fields for other tools (`num_classes`, `input_size`, `mean`, `std`, `crop_pct`,
  `interpolation`, `label_names`);
- `README.md`: the model card for people, with the hub's front matter (readme.py), rewritten with the folder.

Every training run writes one, RUN/model/, with the weights it evaluated last. `create_model(weights=FOLDER)`
rebuilds the network; uploaded to the hub, the folder loads with `weights="hf-hub:ORG/NAME"`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from inceptionnet._version import __version__
from inceptionnet.atomic import atomic_write
from inceptionnet.card import ModelCard
from inceptionnet.models import InceptionNetwork, Preprocessing
from inceptionnet.weights.files import CONFIG_FILE, README_FILE, WEIGHTS_FILE, read_safetensors
from inceptionnet.weights.readme import render_readme
from inceptionnet.weights.record import FORMAT_NAME, card_metadata, completed_card
from inceptionnet.weights.tags import WeightsError
from inceptionnet.weights.timm_layout import timm_architecture

_AUX = "aux."


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder holding config.json (a model folder, complete or not)."""
    return (Path(path) / CONFIG_FILE).is_file()


def save_model_folder(
    folder: str | os.PathLike[str],
    model: InceptionNetwork,
    *,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    metrics: Mapping[str, Any] | None = None,
    weights: str | None = None,
    dataset: str | None = None,
    command: str | None = None,
) -> Path:
    """Write `model` as a model folder (created if needed); returns the folder.

    The folder describes the network by its card (`model.card`); `class_names`, `preprocessing` and
    `metrics` (the validation numbers of these weights) replace the card's, and `weights` says which
    weights they are ("average" or "raw"); `dataset` and `command` (the data and the command that trained
    them) go into README.md only. Each file is written atomically, config.json last, so a
    folder whose config.json is complete has the weights it describes.
    """
    if not isinstance(model, InceptionNetwork):
        raise TypeError(f"a model folder holds one of our networks, not a {type(model).__name__}; unwrap it first")
    if isinstance(class_names, str):
        raise ValueError(f"class_names must be a list of names, one per output, not the string {class_names!r}")
    folder = Path(folder)
    given = {"class_names": class_names, "preprocessing": preprocessing, "metrics": metrics}
    card = model.card.replace(
        options={**model.build_options, "aux_logits": False},
        **{key: tuple(v) if key == "class_names" else v for key, v in given.items() if v is not None},
    )
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith(_AUX)}
    atomic_write(folder / WEIGHTS_FILE, safetensors.torch.save(state, metadata=card_metadata(card)))
    readme = render_readme(card, timm_name=_timm_name(model), dataset=dataset, command=command)
    atomic_write(folder / README_FILE, readme.encode())
    config = model_config(card, weights=weights)
    atomic_write(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return folder


def update_folder_card(folder: str | os.PathLike[str], **changes: Any) -> ModelCard:
    """Change fields of a model folder's card (`ModelCard.replace(**changes)`: its calibration, say); returns the new
    card. config.json and the weights file's header are rewritten, atomically, config.json last; the weights
    themselves and README.md are left as they are."""
    folder = Path(folder)
    state, card, weights = read_model_folder(folder)
    card = card.replace(**changes)
    atomic_write(folder / WEIGHTS_FILE, safetensors.torch.save(state, metadata=card_metadata(card)))
    atomic_write(folder / CONFIG_FILE, (json.dumps(model_config(card, weights=weights), indent=2) + "\n").encode())
    return card


def _timm_name(model: InceptionNetwork) -> str | None:
    """timm's name of `model`'s network when timm builds the same one, else None."""
    try:
        return timm_architecture(model)
    except WeightsError:
        return None


def model_config(card: ModelCard, *, weights: str | None) -> dict[str, Any]:
    """The config.json of a model folder: the card, which weights these are, then timm's fields."""
    pre = card.preprocessing
    return {
        "format": FORMAT_NAME,
        "version": __version__,
        **card.to_dict(),
        "weights": weights,
        # timm's pretrained-config fields, for tools that read them
        "input_size": [card.in_chans, pre.input_size, pre.input_size],
        "mean": list(pre.mean),
        "std": list(pre.std),
        "crop_pct": pre.crop_fraction,
        "interpolation": pre.interpolation,
        "label_names": list(card.class_names) if card.class_names is not None else None,
    }


def read_model_folder(
    folder: str | os.PathLike[str], *, source: str | None = None
) -> tuple[dict[str, torch.Tensor], ModelCard, str | None]:
    """The state dict, the card and which weights they are ("average", "raw" or None) of a model folder.

    A WeightsError names what is missing or wrong.
    """
    folder = Path(folder)
    source = source or str(folder)
    config = _read_config(folder, source=source)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsError(f"{source} has {CONFIG_FILE} but no {WEIGHTS_FILE}; copy the whole model folder")
    state, _ = read_safetensors(weights)
    card = completed_card(config, state, source=f"{source}/{CONFIG_FILE}")
    return state, card, config.get("weights")


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
