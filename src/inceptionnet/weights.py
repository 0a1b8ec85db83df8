"""Published ImageNet weights and our own checkpoints: download, reading, loading, saving.

The published checkpoints are timm's conversions of the TF-slim, torchvision and Gluon releases, stored
on the Hugging Face hub as `timm/<model>.<tag>/model.safetensors`; their catalogue (`WEIGHT_TAGS`,
`get_weight_tag`, `WeightsError`) is weight_tags.py. Their state dicts use timm's module names;
`KEY_TABLE` (weight_keys.py) maps them onto ours, once, explicitly, and `load_weights` applies it.
Both modules' public names are re-exported here: `inceptionnet.weights` is the entry point.
Nothing is ever unpickled: `.safetensors` files are read with safetensors, `.pth/.pt/.bin` with
`torch.load(weights_only=True)`.

Our own checkpoints (`save_weights`) are safetensors files whose metadata records the model name,
its build options and its preprocessing, so `create_model(name, weights=path)` rebuilds the same network.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet.models.base import Preprocessing
from inceptionnet.weight_keys import (
    KEY_TABLE,  # noqa: F401 (re-exported: inceptionnet.weights is the public entry point)
    PUBLISHED_FIRST_CONV,
    convert_published,
    map_published_key,  # noqa: F401 (re-exported)
    published_layout,
)
from inceptionnet.weight_tags import (
    DEFAULT_TAGS,  # noqa: F401 (re-exported)
    IMAGENET_MEAN,  # noqa: F401 (re-exported)
    IMAGENET_STD,  # noqa: F401 (re-exported)
    WEIGHT_TAGS,  # noqa: F401 (re-exported)
    WEIGHTS_DIR_ENV,
    WeightsError,
    WeightTag,
    get_weight_tag,
    list_weights,  # noqa: F401 (re-exported)
    weights_dir,  # noqa: F401 (re-exported)
)

log = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
FORMAT_NAME = "inceptionnet"  # metadata["format"] of our own checkpoints


# -- our own layout ---------------------------------------------------------------------------------------------
# The first convolution (adapted to other input channels; its key recognises our checkpoints) and the
# classifiers (which may have another class count than the file's). Published keys: weight_keys.py.
FIRST_CONV = "stem.conv1a.conv.weight"
CLASSIFIERS = ("head.fc", "aux.fc")


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
        from safetensors import safe_open

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


def _parse_metadata(meta: Mapping[str, str]) -> dict[str, Any]:
    """The build record of one of our own checkpoints ({} for other files)."""
    if meta.get("format") != FORMAT_NAME:
        return {}
    return {
        "model": meta.get("model"),
        "options": json.loads(meta.get("options", "{}")),
        "preprocessing": json.loads(meta["preprocessing"]) if "preprocessing" in meta else None,
        "weights": meta.get("weights"),
    }


# -- fitting a state dict to a network ------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What `load_state_dict_into` did beyond a plain copy (all of it is also logged)."""

    reinitialised: list[str] = field(default_factory=list)  # our keys left at their fresh initialisation
    dropped: list[str] = field(default_factory=list)  # checkpoint keys not used
    adapted: list[str] = field(default_factory=list)  # keys changed to fit (first conv, background class)


def adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv weights for `in_chans` input channels from weights trained on weight.shape[1] channels.

    One channel: the sum over the trained channels (a grey image then gives the response of the
    colour image with equal channels). More: the trained channels repeated cyclically and scaled by
    trained/new, so the response to a constant image keeps its size.
    """
    trained = weight.shape[1]
    if in_chans == trained:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / trained)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (trained / in_chans)


def _few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}{f', ... ({len(keys)} in all)' if len(keys) > n else f' ({len(keys)})'}"


def load_state_dict_into(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> LoadReport:
    """Copy a state dict in our layout into `model`, adapting what users expect to be adapted.

    - classifier (and auxiliary classifier) of another size: left freshly initialised, except a
      1001-way TF classifier (index 0 = background) for a 1000-class model, whose row 0 is dropped;
    - first convolution for another number of input channels: `adapt_first_conv`;
    - auxiliary head absent from the file: left initialised; present in the file, absent from the
      model: ignored.
    Anything else that does not match (missing, unexpected or mis-shaped keys) raises WeightsError
    naming a few of the keys and their count.
    """
    report = LoadReport()
    own = model.state_dict()
    state = dict(state)
    for name in CLASSIFIERS:
        w, b = f"{name}.weight", f"{name}.bias"
        if w in state and w in own and state[w].shape[0] == 1001 and own[w].shape[0] == 1000:
            state[w], state[b] = state[w][1:], state[b][1:]
            report.adapted.append(f"{name} (1001 -> 1000 classes: background row 0 dropped)")
    first, target = state.get(FIRST_CONV), own.get(FIRST_CONV)
    if (
        first is not None
        and target is not None
        and first.shape[1] != target.shape[1]
        and first.shape[0] == target.shape[0]
    ):
        state[FIRST_CONV] = adapt_first_conv(first, target.shape[1])
        report.adapted.append(f"{FIRST_CONV} ({first.shape[1]} -> {target.shape[1]} input channels)")

    def optional(key: str) -> bool:  # parts that may legitimately stay initialised or be ignored
        return key.startswith(("head.fc.", "aux."))

    # Older published files carry no BN step counters; they only matter to momentum-free BN training.
    for k in own:
        if k.endswith(".num_batches_tracked") and k not in state:
            state[k] = own[k]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    bad_missing = [k for k in missing if not optional(k)]
    bad_unexpected = [k for k in unexpected if not optional(k)]
    bad_shape = [k for k in mismatched if not k.startswith(("head.fc.", "aux.fc."))]
    if bad_missing or bad_unexpected or bad_shape:
        lines = [f"{source} does not fit {getattr(model, 'model_name', type(model).__name__)}:"]
        if bad_shape:
            k = bad_shape[0]
            example = f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
            lines.append(f"  shape mismatch: {_few(bad_shape)}; e.g. {example}")
        if bad_missing:
            lines.append(f"  missing from the file: {_few(bad_missing)}")
        if bad_unexpected:
            lines.append(f"  unexpected in the file: {_few(bad_unexpected)}")
        lines.append(
            "  Check that the file was saved from the same network with the same width and options "
            "(num_classes and in_chans may differ)."
        )
        raise WeightsError("\n".join(lines))
    load = {k: v for k, v in state.items() if k in own and k not in mismatched}
    report.reinitialised = sorted(set(missing) | set(mismatched))
    report.dropped = sorted(set(unexpected) | set(mismatched))
    model.load_state_dict({**own, **load}, strict=True)
    for line in report.adapted:
        log.info("%s: adapted %s", source, line)
    if report.reinitialised:
        log.info("%s: not loaded, freshly initialised: %s", source, _few(report.reinitialised))
    if report.dropped:
        log.info("%s: not used from the file: %s", source, _few(report.dropped))
    return report


@dataclass
class ResolvedWeights:
    """Weights found, read and renamed to our layout, with what is known about them."""

    source: str  # tag name or file path, for messages
    state: dict[str, torch.Tensor]
    tag: WeightTag | None = None  # the catalogue entry, for published tags
    metadata: dict[str, Any] = field(default_factory=dict)  # our own checkpoints' build record
    published: bool = False  # the file had the published (timm) layout


def resolve_weights(model_name: str, weights: str | os.PathLike[str]) -> ResolvedWeights:
    """Find (download if needed), read and rename the weights `weights` of `model_name`.

    `weights` is a tag of `list_weights(model_name)` ("tf_in1k" or "inception_v4.tf_in1k") or a local
    file: one of our checkpoints, or a published checkpoint in timm's layout.
    """
    tag = None
    if is_local_path(weights):
        path, source = Path(weights), str(weights)
    else:
        tag = get_weight_tag(model_name, str(weights))
        path, source = download(tag), tag.name
    state, raw_meta = read_state_dict(path)
    layout = published_layout(state)
    if layout is not None:
        if layout != model_name:
            raise WeightsError(f"{source} holds {layout} weights (published layout), not {model_name} weights")
        return ResolvedWeights(source, convert_published(model_name, state), tag, {}, published=True)
    if FIRST_CONV not in state:
        expected = PUBLISHED_FIRST_CONV.get(model_name, "a published first-conv key")
        raise WeightsError(
            f"{source} is neither one of our checkpoints nor a published {model_name} checkpoint "
            f"(it has no {FIRST_CONV} and no {expected}); its keys include: {_few(sorted(state))}"
        )
    metadata = _parse_metadata(raw_meta)
    if metadata and metadata["model"] != model_name:
        raise WeightsError(f"{source} is a {metadata['model']} checkpoint, not {model_name}")
    return ResolvedWeights(source, state, tag, metadata)


def load_weights(model: nn.Module, weights: str | os.PathLike[str], *, model_name: str | None = None) -> LoadReport:
    """Load a published tag ("tf_in1k") or a local file (ours, or in the published layout) into `model`.

    `create_model(name, weights=...)` is usually what you want: it also applies the tag's
    preprocessing and model options (e.g. Inception-v3's `count_include_pad`).
    """
    resolved = resolve_weights(model_name or model.model_name, weights)
    return load_state_dict_into(model, resolved.state, source=resolved.source)


# -- our own checkpoints ------------------------------------------------------------------------------------


def save_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    options: Mapping[str, Any] | None = None,
    weights: str | None = None,
) -> Path:
    """Save the model's state dict as safetensors, with metadata to rebuild it.

    The metadata records the model name, its build `options` (default: those `create_model` recorded
    on the model), its preprocessing and the weights it started from, so that
    `create_model(name, weights=path)` gives back the same network.
    """
    from safetensors.torch import save_file

    from inceptionnet import __version__

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: never a half-written checkpoint under the final name
    return path


def preprocessing_from_dict(d: Mapping[str, Any]) -> Preprocessing:
    """The Preprocessing recorded as a dict (`asdict`, JSON) in a checkpoint's metadata, with its types restored."""
    return Preprocessing(
        input_size=int(d["input_size"]),
        mean=tuple(d["mean"]),
        std=tuple(d["std"]),
        crop_fraction=float(d["crop_fraction"]),
        interpolation=str(d["interpolation"]),
    )
