"""A weights argument -> a state dict in our layout, with what is known about its network.

A weights argument is one of (docs/weights.md, "Naming a model"):

- a published tag of the network ("tf_in1k", or "inception_v4.tf_in1k"): found or downloaded (files.py);
- a file: one of ours (.safetensors with its card), a published checkpoint in timm's layout, a
  plain state dict, one of our training checkpoints (.pt, checkpoint.py), or a timm training checkpoint;
- a folder: a model folder (config.json + model.safetensors, artifact.py) or a run folder (runfolder.py);
- "hf-hub:ORG/NAME": a model folder on the Hugging Face hub (hub.py).

Published state dicts use timm's module names; `KEY_TABLE` (keys.py) renames them, once, explicitly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet.card import ModelCard
from inceptionnet.models import Preprocessing
from inceptionnet.weights.artifact import is_model_folder, read_model_folder
from inceptionnet.weights.checkpoint import checkpoint_weights, is_checkpoint
from inceptionnet.weights.files import (
    FIRST_CONV,
    LOCAL_SUFFIXES,
    download,
    is_local_path,
    load_plain,
    read_safetensors,
    read_state_dict,
    unwrap_state_dict,
)
from inceptionnet.weights.fitting import LoadReport, list_keys, load_state_dict_into
from inceptionnet.weights.hub import download_model_folder, is_hub_address
from inceptionnet.weights.keys import PUBLISHED_FIRST_CONV, convert_published, published_layout
from inceptionnet.weights.record import card_from_metadata
from inceptionnet.weights.runfolder import run_weights
from inceptionnet.weights.tags import WEIGHT_TAGS, WeightsError, WeightTag, get_weight_tag

log = logging.getLogger(__name__)


@dataclass
class ResolvedWeights:
    """Weights found, read and renamed to our layout, with what is known about their network."""

    source: str  # tag name, path or hub address, for messages
    state: dict[str, torch.Tensor]
    tag: WeightTag | None = None  # the catalogue entry, for published tags
    card: ModelCard | None = None  # the card of our files, model folders and training checkpoints
    published: str | None = None  # the network whose published (timm) layout the file had
    note: str | None = None  # which of the file's weights were taken, when it holds several

    @property
    def model_name(self) -> str | None:
        """The network the weights belong to, when they say."""
        if self.card is not None:
            return self.card.model_name
        return self.tag.model if self.tag is not None else self.published

    @property
    def options(self) -> dict[str, Any]:
        """The build options the weights need (a tag's) or were saved with (ours)."""
        if self.card is not None:
            return dict(self.card.options)
        if self.tag is not None:
            return dict(self.tag.model_options)
        if self.published == "inception_v3":
            # every published v3 checkpoint is evaluated with padded average pools (see the v3 tags)
            return {"count_include_pad": True}
        return {}

    @property
    def preprocessing(self) -> Preprocessing | None:
        """The preprocessing the weights were evaluated with: their card's or their tag's; None: unknown."""
        if self.card is not None:
            return self.card.preprocessing
        return self.tag.preprocessing if self.tag is not None else None

    @property
    def num_classes(self) -> int | None:
        """Rows of the stored classifier (1001 for TF's background class); None without one."""
        w = self.state.get("head.fc.weight")
        return int(w.shape[0]) if w is not None else None

    @property
    def imagenet(self) -> bool:
        """Published ImageNet weights: a 1000-way classifier's outputs are the synsets in sorted order."""
        return self.tag is not None or self.published is not None


def resolve_weights(model_name: str | None, weights: str | os.PathLike[str]) -> ResolvedWeights:
    """Find (download if needed), read and rename the weights `weights`; `model_name` None: the weights name it.

    A network name that differs from the one the weights record is an error naming both; so are weights
    that name no network when `model_name` is None.
    """
    text = os.fspath(weights)
    if is_hub_address(text):
        resolved = _from_model_folder(download_model_folder(text), source=text)
    elif not is_local_path(text):
        resolved = _from_tag(model_name, text)
    else:
        resolved = _from_path(Path(text))
    return _checked(model_name, resolved)


def _from_tag(model_name: str | None, text: str) -> ResolvedWeights:
    prefix, dot, _ = text.partition(".")
    with_weights = sorted({t.model for t in WEIGHT_TAGS})
    if model_name is None and not (dot and prefix in with_weights):
        raise WeightsError(
            f"{text!r} is no file or folder, and a published tag needs its network: NAME:{text} or NAME.{text} "
            f"(networks with published weights: {', '.join(with_weights)})"
        )
    try:
        tag = get_weight_tag(model_name or prefix, text)
    except WeightsError as err:
        raise WeightsError(f"{err} (and there is no file or folder named {text!r})") from None
    state, _ = read_state_dict(download(tag))
    return _in_our_layout(ResolvedWeights(tag.name, state, tag=tag))


def _from_path(path: Path) -> ResolvedWeights:
    if path.is_dir():
        found = path if is_model_folder(path) else run_weights(path)
        if found.is_dir():
            return _from_model_folder(found, source=str(found))
        path = found
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (nor a folder of that name)")
    source = str(path)
    if path.suffix == ".safetensors":
        state, meta = read_safetensors(path)
        return _in_our_layout(ResolvedWeights(source, state, card=card_from_metadata(meta, state, source=source)))
    if path.suffix not in LOCAL_SUFFIXES:
        raise WeightsError(f"{path}: unknown weights format; use one of {', '.join(LOCAL_SUFFIXES)}, or a folder")
    obj = load_plain(path)
    if is_checkpoint(obj):
        state, card, which = checkpoint_weights(obj, source=source)
        return _in_our_layout(ResolvedWeights(source, state, card=card, note=_which(which)))
    state, note = unwrap_state_dict(obj, source=source)
    return _in_our_layout(ResolvedWeights(source, state, note=note))


def _from_model_folder(folder: Path, *, source: str) -> ResolvedWeights:
    state, card, which = read_model_folder(folder, source=source)
    return _in_our_layout(ResolvedWeights(source, state, card=card, note=_which(which)))


def _which(weights: str | None) -> str | None:
    """The log line's words for a run's weights: "average" or "raw" (None: a single set)."""
    if weights == "average":
        return "the weight average (the weights training evaluated)"
    return "the raw weights (the run kept no weight average)" if weights == "raw" else None


def _in_our_layout(resolved: ResolvedWeights) -> ResolvedWeights:
    """Rename a published (timm) layout to ours; refuse a state dict in neither layout."""
    layout = published_layout(resolved.state)
    if layout is not None:
        if resolved.tag is not None and resolved.tag.model != layout:
            raise WeightsError(f"{resolved.source} holds {layout} weights, not {resolved.tag.model} weights")
        resolved.state = convert_published(layout, resolved.state)
        resolved.published = layout
    elif FIRST_CONV not in resolved.state:
        published = " and no ".join(PUBLISHED_FIRST_CONV.values())
        raise WeightsError(
            f"{resolved.source} is neither one of our checkpoints nor a published checkpoint (it has no "
            f"{FIRST_CONV} and no {published}); its keys include: {list_keys(sorted(resolved.state))}"
        )
    return resolved


def _checked(model_name: str | None, resolved: ResolvedWeights) -> ResolvedWeights:
    """The weights, once they agree with the network asked for (and name one between them)."""
    held = resolved.model_name
    if model_name is not None and held is not None and held != model_name:
        raise WeightsError(
            f"{resolved.source} holds {held} weights, not {model_name} weights; name {held} instead, or leave the "
            "network out (these weights name theirs)"
        )
    if model_name is None and held is None:
        raise WeightsError(
            f"{resolved.source} does not say which network it holds (a state dict without our metadata); "
            f"name the network: create_model(NAME, weights=...) or --model NAME:{resolved.source}"
        )
    if resolved.note:
        log.info("%s: loading %s", resolved.source, resolved.note)
    return resolved


def load_weights(model: nn.Module, weights: str | os.PathLike[str], *, model_name: str | None = None) -> LoadReport:
    """Load a published tag ("tf_in1k"), a file, a folder or a hub model folder into `model`.

    `create_model(weights=...)` is usually what you want: it also builds the network the weights
    need (its options, class count, preprocessing and class names).
    """
    resolved = resolve_weights(model_name or model.model_name, weights)
    return load_state_dict_into(model, resolved.state, source=resolved.source)
