"""Weight files: finding published checkpoints (download), reading any file safely, saving our own.

Nothing is ever unpickled: `.safetensors` files are read with safetensors, `.pth/.pt/.bin` with
`torch.load(weights_only=True)`. Our own checkpoints (`save_weights`) are safetensors files whose
metadata records the model name, its build options and its preprocessing, so
`create_model(name, weights=path)` rebuilds the same network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open
from torch import nn

from inceptionnet._version import __version__
from inceptionnet.atomic import atomic_write
from inceptionnet.models import Preprocessing
from inceptionnet.weights.tags import WEIGHTS_DIR_ENV, WeightsError, WeightTag

LOCAL_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
FORMAT_NAME = "inceptionnet"  # metadata["format"] of our own checkpoints


# The first convolution of our layout: its key recognises our checkpoints (published keys: keys.py).
FIRST_CONV = "stem.conv1a.conv.weight"


# -- finding and reading files --------------------------------------------------------------------------------


def is_local_path(weights: str | os.PathLike[str]) -> bool:
    """A weights argument names a file (rather than a tag) if it has a checkpoint suffix or a path separator."""
    s = os.fspath(weights)
    return s.endswith(LOCAL_SUFFIXES) or os.sep in s or "/" in s or Path(s).is_file()


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
            f"cannot get the {tag.name} weights ({type(err).__name__}: {_first_sentence(err)}). "
            f"Download {tag.url} (Hugging Face repo {tag.hf_repo}, file {tag.hf_filename}) on a machine with "
            f"internet access and save it as {manual} (or set ${WEIGHTS_DIR_ENV} to the folder holding "
            f"{tag.name}.safetensors); or pass weights='<path to the file>' to load it directly."
        ) from None


def _first_sentence(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else "no details"
    return text.split(". ")[0].rstrip(".")


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a checkpoint file, without unpickling anything.

    `.safetensors` through safetensors; `.pth/.pt/.bin` through `torch.load(weights_only=True)`, which
    accepts tensors and plain containers only. A dict with a "state_dict" or "model" entry is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118 (safe_open has no __iter__)
        except Exception as err:
            raise WeightsError(f"{path} is not a readable safetensors file ({err})") from None
    if path.suffix not in LOCAL_SUFFIXES:
        raise WeightsError(f"{path}: unknown weights format; use one of {', '.join(LOCAL_SUFFIXES)}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"{path} cannot be read as plain tensors with torch.load(weights_only=True) ({str(err).splitlines()[0]}); "
            "convert it to .safetensors or save only the state dict"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(obj), {}


def parse_metadata(meta: Mapping[str, str]) -> dict[str, Any]:
    """The build record of one of our own checkpoints ({} for other files)."""
    if meta.get("format") != FORMAT_NAME:
        return {}
    return {
        "model": meta.get("model"),
        "options": json.loads(meta.get("options", "{}")),
        "preprocessing": json.loads(meta["preprocessing"]) if "preprocessing" in meta else None,
        "weights": meta.get("weights"),
    }


# -- our own checkpoints ------------------------------------------------------------------------------------


def save_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    options: Mapping[str, Any] | None = None,
    weights: str | None = None,
) -> Path:
    """Save the model's state dict as safetensors, with metadata to rebuild it.

    The metadata records the model name, its build `options` (default: every option the network was
    built with, `model.build_options`), its preprocessing and the weights it started from, so that
    `create_model(name, weights=path)` gives back the same network.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"our checkpoints are safetensors files; name it {path.with_suffix('.safetensors')}")
    opts = dict(options if options is not None else getattr(model, "build_options", {}))
    meta = {
        "format": FORMAT_NAME,
        "version": __version__,
        "model": getattr(model, "model_name", type(model).__name__),
        "options": json.dumps(opts, sort_keys=True),
        "preprocessing": json.dumps(asdict(getattr(model, "preprocessing", Preprocessing()))),
    }
    if weights or getattr(model, "weights_name", None):
        meta["weights"] = str(weights or model.weights_name)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, safetensors.torch.save(state, metadata=meta))


def preprocessing_from_dict(d: Mapping[str, Any]) -> Preprocessing:
    """The Preprocessing recorded as a dict (`asdict`, JSON) in a checkpoint's metadata, with its types restored."""
    return Preprocessing(
        input_size=int(d["input_size"]),
        mean=tuple(d["mean"]),
        std=tuple(d["std"]),
        crop_fraction=float(d["crop_fraction"]),
        interpolation=str(d["interpolation"]),
    )
