"""The ONNX files the CPU engines run: a network exported once, with BatchNorm folded, and kept.

Exporting costs time (about half a minute for Inception-v4 at 299 on two cores: tracing, folding,
and a check of the file against the eager network), so the file is kept in a cache keyed by a hash
of everything it depends on: the weights and buffers, the network's card at the exported size (its
name and options make the graph; the whole card is the file's metadata), and the torch and package
versions. The cache is `$INCEPTIONNET_ENGINE_CACHE`, by default
`~/.cache/inceptionnet/onnx` (about 4 bytes per parameter: 170 MB for Inception-v4).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from inceptionnet._version import __version__
from inceptionnet.export.formats import export_card, export_model
from inceptionnet.models import InceptionNetwork

CACHE_ENV = "INCEPTIONNET_ENGINE_CACHE"

Log = Callable[[str], None]


def cache_folder() -> Path:
    """Where exported ONNX files are kept: $INCEPTIONNET_ENGINE_CACHE, or ~/.cache/inceptionnet/onnx."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "inceptionnet" / "onnx").expanduser()


def network_digest(model: InceptionNetwork, *, input_size: int) -> str:
    """A hash of everything an export depends on: weights and buffers, the card at `input_size`, versions.

    The whole card counts, not only the name and options that make the graph: the file carries the
    card as its metadata, so a network renamed or relabelled gets a file that says so.
    """
    h = hashlib.sha256()
    header = {
        "card": export_card(model, input_size=input_size).to_dict(),
        "torch": torch.__version__,
        "inceptionnet": __version__,
    }
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:24]


def export_path(
    model: InceptionNetwork, *, input_size: int, cache: bool | str | os.PathLike[str] | None
) -> Path | None:
    """Where the export of `model` is cached (None: not cached, a temporary folder is used)."""
    if cache is None:
        cache = model.weights_name is not None
    if cache is False:
        return None
    folder = cache_folder() if cache is True else Path(cache)
    return folder / f"{model.model_name}-{input_size}-{network_digest(model, input_size=input_size)}.onnx"


def onnx_export(
    model: InceptionNetwork,
    *,
    input_size: int,
    cache: bool | str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> tuple[Path, Path | None]:
    """The BN-folded, dynamic-batch ONNX file of `model` (from the cache when there), and the temporary
    folder holding it (None for a cached file), which the caller removes when done."""
    say = log or (lambda _msg: None)
    name = model.model_name
    cached = export_path(model, input_size=input_size, cache=cache)
    temp = None
    if cached is None:
        temp = Path(tempfile.mkdtemp(prefix="inceptionnet-onnx-"))
        path = temp / f"{name}.onnx"
    else:
        path = cached
        if path.is_file():
            say(f"using the ONNX export {path}")
            return path, None
    where = f"cached as {path}" if temp is None else "in a temporary folder"
    say(f"exporting {name} to ONNX at {input_size}x{input_size} ({where}); this takes seconds to a minute ...")
    was_training = model.training
    source = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    try:
        export_model(source, format="onnx", output=path, input_size=input_size, dynamic_batch=True, fold_bn=True)
    except BaseException:
        path.unlink(missing_ok=True)
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)  # the export put it in eval mode
    return path, temp
