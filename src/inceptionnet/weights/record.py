"""What our own weight files say about their network: its model card (inceptionnet.card).

Every file the package writes for a network (a `save_weights` file, a model folder, a training
checkpoint) carries the network's card: its name and every build option, so that the network can
be rebuilt exactly without any other argument, and its class names, preprocessing, label mode and
metrics. In a safetensors header the card is a flat mapping of strings (`card_metadata`,
`card_from_metadata`). Files written before the card existed lack some of its fields; `completed_card`
fills them from what such files do hold (the build options, the classifier's rows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from inceptionnet._version import __version__
from inceptionnet.card import CardError, ModelCard
from inceptionnet.models import get_entry
from inceptionnet.weights.tags import WeightsError

FORMAT_NAME = "inceptionnet"  # metadata["format"] of our own files
_CLASSIFIER = "head.fc.weight"
# card.to_dict() key -> its name in a safetensors header, where the header's name predates the card
_HEADER_NAMES = {"model_name": "model", "model_options": "options", "weights_name": "weights"}
_PLAIN = ("format", "version", "model", "weights")  # header values stored as the string itself, not as JSON


def known_model(name: Any, *, source: str) -> str:
    """`name` if it is one of our networks, else a WeightsError naming the file and the choices."""
    try:
        get_entry(name)
    except ValueError as err:
        raise WeightsError(f"{source} records the network {name!r}, which this version does not know: {err}") from None
    return name


def card_metadata(card: ModelCard) -> dict[str, str]:
    """The card as safetensors metadata (strings only), beside the file's format and the package version."""
    meta = {"format": FORMAT_NAME, "version": __version__}
    for key, value in card.to_dict().items():
        if value is not None:
            name = _HEADER_NAMES.get(key, key)
            meta[name] = value if name in _PLAIN else json.dumps(value, sort_keys=True)
    return meta


def card_from_metadata(meta: Mapping[str, str], state: Mapping[str, torch.Tensor], *, source: str) -> ModelCard | None:
    """The card in one of our safetensors headers; None for other files (published or plain state dicts).

    `state` is the file's state dict: headers written before the card existed give the class count by
    the classifier's rows alone when their build options lack it.
    """
    if meta.get("format") != FORMAT_NAME:
        return None
    card_keys = {header: key for key, header in _HEADER_NAMES.items()}
    try:
        fields = {
            card_keys.get(name, name): value if name in _PLAIN else json.loads(value)
            for name, value in meta.items()
            if name not in ("format", "version")
        }
    except ValueError as err:
        raise WeightsError(f"{source}: unreadable inceptionnet metadata ({err}); write the file again") from None
    return completed_card(fields, state, source=source)


def completed_card(fields: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, source: str) -> ModelCard:
    """The card that `fields` (a card's `to_dict()`, perhaps from an older file) describe, or a WeightsError.

    What older files lack is filled from what they hold: the class count and input channels from the
    build options (else the classifier's rows), the preprocessing from the network's default.
    """
    name = known_model(fields.get("model_name"), source=source)
    options = fields.get("model_options") or {}
    if not isinstance(options, Mapping):
        raise WeightsError(f"{source}: the build options are not a mapping ({options!r:.80}); write the file again")
    rows = state[_CLASSIFIER].shape[0] if _CLASSIFIER in state else 0
    defaults = {
        "num_classes": options.get("num_classes", rows),
        "in_chans": options.get("in_chans", 3),
        "preprocessing": get_entry(name).preprocessing.to_dict(),
    }
    try:
        return ModelCard.from_dict({**defaults, **fields}, source=source)
    except CardError as err:
        raise WeightsError(str(err)) from None
