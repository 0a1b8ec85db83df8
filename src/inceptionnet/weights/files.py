"""Weight files: finding published checkpoints (download), reading any file safely, saving our own.

Nothing is ever unpickled: `.safetensors` files are read with safetensors, `.pth/.pt/.bin/.tar` with
`torch.load(weights_only=True)` (which rebuilds tensors and plain containers only; the
`argparse.Namespace` of timm's training checkpoints is the one class it may also rebuild, an
attribute holder). Our own files are safetensors files whose metadata is the network's card (its name,
build options, preprocessing, class names, ...; record.py), so `create_model(weights=path)`
rebuilds the same network.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open

from inceptionnet.atomic import atomic_write
from inceptionnet.models import InceptionNetwork
from inceptionnet.weights.record import card_metadata
from inceptionnet.weights.tags import WEIGHTS_DIR_ENV, WeightsError, WeightTag

# A model folder's files (artifact.py), named here so that every writer of the layout shares them.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
README_FILE = "README.md"

LOCAL_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")

# The first convolution of our layout: its key recognises our checkpoints (published keys: keys.py).
FIRST_CONV = "stem.conv1a.conv.weight"

# Wrappers around a state dict, in order of preference: timm's training checkpoints keep the weight
# average (what timm validates with when it is enabled) beside the raw weights.
_WRAPPERS = (
    ("state_dict_ema", "its weight average (state_dict_ema)"),
    ("state_dict", "its raw weights (state_dict)"),
    ("model", "its weights (model)"),
)


# -- finding and reading files --------------------------------------------------------------------------------


def is_local_path(weights: str | os.PathLike[str]) -> bool:
    """A weights argument names a file or folder (rather than a tag): a checkpoint suffix, a separator, or it exists."""
    s = os.fspath(weights)
    return s.endswith(LOCAL_SUFFIXES) or os.sep in s or "/" in s or Path(s).exists()


def download(tag: WeightTag) -> Path:
    """The local file of a published checkpoint: a manual copy in `weights_dir()`, else the Hugging Face cache.

    Uses `huggingface_hub.hf_hub_download` (its normal cache, its offline fallback). Without network
    and without a cached copy, raises WeightsError saying which file to fetch, from where, and where to put it.
    """
    manual = tag.local_path()
    if manual.is_file():
        return manual
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=tag.hf_repo, filename=tag.hf_filename))
    except Exception as err:  # offline, hub unreachable, repository moved: one actionable message
        raise WeightsError(
            f"cannot get the {tag.name} weights ({type(err).__name__}: {first_sentence(err)}). "
            f"Download {tag.url} (Hugging Face repo {tag.hf_repo}, file {tag.hf_filename}) on a machine with "
            f"internet access and save it as {manual} (or set ${WEIGHTS_DIR_ENV} to the folder holding "
            f"{tag.name}.safetensors); or pass weights='<path to the file>' to load it directly."
        ) from None


def first_sentence(err: Exception) -> str:
    """The first sentence of an exception's message, for an error of our own that wraps it."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else "no details"
    return text.split(". ")[0].rstrip(".")


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as err:
        raise WeightsError(f"{path} is not a readable safetensors file ({err})") from None


def load_plain(path: Path) -> Any:
    """`torch.load(weights_only=True)` of a .pth/.pt/.bin/.tar file: tensors and plain containers, never code."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # timm's training checkpoints keep their args
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"{path} cannot be read as plain tensors with torch.load(weights_only=True) ({str(err).splitlines()[0]}); "
            "convert it to .safetensors or save only the state dict"
        ) from None


def unwrap_state_dict(obj: Any, *, source: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict inside a loaded file, and which wrapper entry it came from (None: the file is one).

    A weight average (timm's "state_dict_ema") is preferred to the raw weights beside it.
    """
    note = None
    for key, what in _WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj, note = obj[key], what
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{source} does not hold a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}, note


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a weights file, without unpickling anything.

    `.safetensors` through safetensors; other suffixes through `torch.load(weights_only=True)`, where a
    dict with a "state_dict_ema", "state_dict" or "model" entry is unwrapped (in that order).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix not in LOCAL_SUFFIXES:
        raise WeightsError(f"{path}: unknown weights format; use one of {', '.join(LOCAL_SUFFIXES)}")
    state, _ = unwrap_state_dict(load_plain(path), source=str(path))
    return state, {}


# -- our own files --------------------------------------------------------------------------------------------


def save_weights(
    model: InceptionNetwork,
    path: str | os.PathLike[str],
    *,
    options: Mapping[str, Any] | None = None,
    weights: str | None = None,
) -> Path:
    """Save the model's state dict as safetensors, with its card (record.py) to rebuild it.

    The metadata is the network's card (`model.card`): its name, its build `options` (default: every
    option the network was built with, `model.build_options`), its preprocessing, its class names and
    the weights it started from (`weights`, default `model.weights_name`), so that
    `create_model(weights=path)` gives back the same network.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"our checkpoints are safetensors files; name it {path.with_suffix('.safetensors')}")
    if not isinstance(model, InceptionNetwork):
        raise TypeError(
            f"save_weights writes one of our networks with its card, not a {type(model).__name__}; "
            "for another module use safetensors.torch.save_file(module.state_dict(), path)"
        )
    card = model.card.replace(
        options=dict(options if options is not None else model.build_options),
        weights_name=str(weights) if weights else (model.weights_name or None),
    )
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, safetensors.torch.save(state, metadata=card_metadata(card)))
