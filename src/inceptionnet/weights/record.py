"""What our own weight files say about their network: the build record.

Every file the package writes for a network (a `save_weights` file, a model folder, a training
checkpoint) records the network's name, every build option, its preprocessing and, where known,
its class names, so that the network can be rebuilt exactly without any other argument. In a
safetensors header the record is a flat mapping of strings (`record_metadata`, `record_from_metadata`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from inceptionnet._version import __version__
from inceptionnet.models import Preprocessing, get_entry
from inceptionnet.weights.tags import WeightsError

FORMAT_NAME = "inceptionnet"  # metadata["format"] of our own files


@dataclass(frozen=True)
class ModelRecord:
    """A network's name, build options, preprocessing and class names, as our files record them."""

    model_name: str
    options: dict[str, Any] = field(default_factory=dict)  # create_model options, without the auxiliary head
    preprocessing: Preprocessing | None = None
    class_names: tuple[str, ...] | None = None  # the name of each output, in output order
    metrics: dict[str, Any] | None = None  # validation numbers of these weights (model folders)
    weights: str | None = None  # "average" (the weight average training evaluated) or "raw"


def normalised_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Build options as read back from JSON or a checkpoint: residual scales as a tuple."""
    out = dict(options)
    if isinstance(out.get("scales"), list):
        out["scales"] = tuple(out["scales"])
    return out


def checked_class_names(names: Sequence[str] | None, *, source: str) -> tuple[str, ...] | None:
    """Class names as a tuple of distinct strings, or a WeightsError naming the file."""
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise WeightsError(f"{source}: class names must be a list of strings, got {names!r:.80}")
    if len(set(names)) != len(names):
        raise WeightsError(f"{source}: the class names are not distinct")
    return tuple(names)


def known_model(name: Any, *, source: str) -> str:
    """`name` if it is one of our networks, else a WeightsError naming the file and the choices."""
    try:
        get_entry(name)
    except ValueError as err:
        raise WeightsError(f"{source} records the network {name!r}, which this version does not know: {err}") from None
    return name


def preprocessing_from_dict(d: Mapping[str, Any]) -> Preprocessing:
    """The Preprocessing recorded as a dict (`asdict`, JSON) in a checkpoint's metadata, with its types restored."""
    return Preprocessing(
        input_size=int(d["input_size"]),
        mean=tuple(d["mean"]),
        std=tuple(d["std"]),
        crop_fraction=float(d["crop_fraction"]),
        interpolation=str(d["interpolation"]),
    )


def record_metadata(record: ModelRecord, *, weights_name: str | None = None) -> dict[str, str]:
    """The record as safetensors metadata (strings only). `weights_name`: the weights the network started from."""
    meta = {
        "format": FORMAT_NAME,
        "version": __version__,
        "model": record.model_name,
        "options": json.dumps(record.options, sort_keys=True),
        "preprocessing": json.dumps(asdict(record.preprocessing or get_entry(record.model_name).preprocessing)),
    }
    if record.class_names is not None:
        meta["class_names"] = json.dumps(list(record.class_names))
    if weights_name:
        meta["weights"] = weights_name
    return meta


def record_from_metadata(meta: Mapping[str, str], *, source: str) -> ModelRecord | None:
    """The record in one of our safetensors headers; None for other files (published or plain state dicts)."""
    if meta.get("format") != FORMAT_NAME:
        return None
    try:
        pre = json.loads(meta["preprocessing"]) if "preprocessing" in meta else None
        names = json.loads(meta["class_names"]) if "class_names" in meta else None
        return ModelRecord(
            model_name=known_model(meta.get("model"), source=source),
            options=normalised_options(json.loads(meta.get("options", "{}"))),
            preprocessing=preprocessing_from_dict(pre) if pre else None,
            class_names=checked_class_names(names, source=source),
        )
    except (ValueError, KeyError, TypeError) as err:
        if isinstance(err, WeightsError):
            raise
        raise WeightsError(f"{source}: unreadable inceptionnet metadata ({type(err).__name__}: {err})") from None
