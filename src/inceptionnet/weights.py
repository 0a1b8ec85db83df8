"""Published ImageNet weights: catalogue, download, the key table onto our module names, loading, saving.

The published checkpoints are timm's conversions of the TF-slim, torchvision and Gluon releases, stored
on the Hugging Face hub as `timm/<model>.<tag>/model.safetensors`. Their state dicts use timm's module
names; `KEY_TABLE` maps them onto ours, once, explicitly, and `load_weights` applies it. Nothing is
ever unpickled: `.safetensors` files are read with safetensors, `.pth/.pt/.bin` with
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

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOCAL_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
WEIGHTS_DIR_ENV = "INCEPTIONNET_WEIGHTS_DIR"
FORMAT_NAME = "inceptionnet"  # metadata["format"] of our own checkpoints


class WeightsError(ValueError):
    """Weights that cannot be found, read, or fitted to the requested network (the message says why and how)."""


# -- catalogue ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightTag:
    """One published checkpoint: where it lives, how its images must be prepared, what it scores.

    `model_options` are build options the weights need (e.g. Inception-v3's average-pool arithmetic);
    explicit options given to `create_model` override them. Accuracies are timm's single-crop ImageNet
    validation results at 299 px with this preprocessing (paper-spec section 9; docs/weights.md).
    """

    model: str
    tag: str
    source: str
    preprocessing: Preprocessing
    top1: float
    top5: float
    model_options: tuple[tuple[str, Any], ...] = ()
    has_aux: bool = False
    license: str = "apache-2.0"
    hf_filename: str = "model.safetensors"

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def hf_repo(self) -> str:
        return f"timm/{self.name}"

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.hf_repo}/resolve/main/{self.hf_filename}"

    def local_path(self) -> Path:
        """Where a manually downloaded copy is looked for first (see `weights_dir`)."""
        return weights_dir() / f"{self.name}.safetensors"


_TF = Preprocessing()  # 299, mean/std 0.5, crop 0.875, bicubic
# timm's v3 (like torchvision's) counts the zero padding of the in-block 3x3 average pools, and every
# published v3 checkpoint is evaluated that way; the tag carries the option so logits match timm exactly.
_V3_TIMM_POOLS = (("count_include_pad", True),)

WEIGHT_TAGS: tuple[WeightTag, ...] = (
    WeightTag(
        "inception_v4",
        "tf_in1k",
        "TF-slim inception_v4_2016_09_09 (Szegedy et al.), converted by timm",
        _TF,
        80.144,
        94.982,
    ),
    WeightTag(
        "inception_resnet_v2",
        "tf_in1k",
        "TF-slim inception_resnet_v2_2016_08_30 (Szegedy et al.), converted by timm",
        Preprocessing(crop_fraction=0.8975),
        80.434,
        95.312,
    ),
    WeightTag(
        "inception_resnet_v2",
        "tf_ens_adv_in1k",
        "TF ens_adv_inception_resnet_v2_2017_08_18 (ensemble adversarial training, arXiv:1705.07204), via timm",
        Preprocessing(crop_fraction=0.8975),
        79.998,
        94.940,
    ),
    WeightTag(
        "inception_v3",
        "tf_in1k",
        "TF-slim inception_v3_2016_08_28, converted by timm",
        _TF,
        77.866,
        93.644,
        model_options=_V3_TIMM_POOLS,
    ),
    WeightTag(
        "inception_v3",
        "tv_in1k",
        "torchvision inception_v3_google-1a9a5a14 (ported from TF and fine-tuned), via timm",
        _TF,
        77.434,
        93.474,
        model_options=_V3_TIMM_POOLS,
        has_aux=True,
        license="bsd-3-clause",
    ),
    WeightTag(
        "inception_v3",
        "gluon_in1k",
        "GluonCV inception_v3 (MXNet), converted by timm",
        Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        78.806,
        94.374,
        model_options=_V3_TIMM_POOLS,
    ),
    WeightTag(
        "inception_v3",
        "tf_adv_in1k",
        "TF adv_inception_v3_2017_08_18 (adversarial training, arXiv:1611.01236), converted by timm",
        _TF,
        77.592,
        93.730,
        model_options=_V3_TIMM_POOLS,
    ),
)

# `pretrained=True` loads the authors' own TF-slim release of each network.
DEFAULT_TAGS: dict[str, str] = {
    "inception_v3": "tf_in1k",
    "inception_v4": "tf_in1k",
    "inception_resnet_v2": "tf_in1k",
}


def list_weights(model: str | None = None) -> list[WeightTag]:
    """The published checkpoints, optionally of one model."""
    return [t for t in WEIGHT_TAGS if model is None or t.model == model]


def get_weight_tag(model: str, tag: str | None = None) -> WeightTag:
    """The catalogue entry for `model` and `tag` ("tf_in1k" or "inception_v4.tf_in1k"); None = the default."""
    available = list_weights(model)
    if not available:
        with_weights = sorted({t.model for t in WEIGHT_TAGS})
        raise WeightsError(
            f"{model} has no published weights; networks with weights: {', '.join(with_weights)}. "
            "Pass weights=<path to a checkpoint of your own> instead."
        )
    if tag is None:
        tag = DEFAULT_TAGS[model]
    if "." in tag:
        prefix, tag = tag.split(".", 1)
        if prefix != model:
            raise WeightsError(f"weights {prefix}.{tag} are for {prefix}, not for {model}")
    for t in available:
        if t.tag == tag:
            return t
    raise WeightsError(f"unknown weights {tag!r} for {model}; available: {', '.join(t.tag for t in available)}")


# -- the key table ----------------------------------------------------------------------------------------------
# Rows are (our module path, published module path). A published key is renamed by its longest matching
# published module path; the rest of the key (".conv.weight", ".bn.running_var", ".bias", ...) is kept.
# Our ConvBN and timm's conv units both name their parts `conv` and `bn`.


def _block(ours: str, published: str, rows: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return [(f"{ours}.{o}", f"{published}.{p}") for o, p in rows]


# Inception-v3 blocks (timm keeps torchvision's branch names)
_V3_A = (
    ("branch0", "branch1x1"),
    ("branch1.0", "branch5x5_1"),
    ("branch1.1", "branch5x5_2"),
    ("branch2.0", "branch3x3dbl_1"),
    ("branch2.1", "branch3x3dbl_2"),
    ("branch2.2", "branch3x3dbl_3"),
    ("branch3.1", "branch_pool"),
)
_V3_B = (
    ("branch0", "branch1x1"),
    ("branch1.0", "branch7x7_1"),
    ("branch1.1", "branch7x7_2"),
    ("branch1.2", "branch7x7_3"),
    ("branch2.0", "branch7x7dbl_1"),
    ("branch2.1", "branch7x7dbl_2"),
    ("branch2.2", "branch7x7dbl_3"),
    ("branch2.3", "branch7x7dbl_4"),
    ("branch2.4", "branch7x7dbl_5"),
    ("branch3.1", "branch_pool"),
)
_V3_C = (
    ("branch0", "branch1x1"),
    ("branch1", "branch3x3_1"),
    ("branch1_1x3", "branch3x3_2a"),
    ("branch1_3x1", "branch3x3_2b"),
    ("branch2.0", "branch3x3dbl_1"),
    ("branch2.1", "branch3x3dbl_2"),
    ("branch2_1x3", "branch3x3dbl_3a"),
    ("branch2_3x1", "branch3x3dbl_3b"),
    ("branch3.1", "branch_pool"),
)
# Inception-v4's Inception-C: timm numbers the branch parts, we name them by kernel
_V4_C = (
    ("branch0", "branch0"),
    ("branch1", "branch1_0"),
    ("branch1_1x3", "branch1_1a"),
    ("branch1_3x1", "branch1_1b"),
    ("branch2.0", "branch2_0"),
    ("branch2.1", "branch2_1"),
    ("branch2.2", "branch2_2"),
    ("branch2_1x3", "branch2_3a"),
    ("branch2_3x1", "branch2_3b"),
    ("branch3.1", "branch3.1"),
)
# Inception-ResNet blocks: branches keep their names, the 1x1 up-projection is timm's `conv2d`
_IR_UP = (("up.conv", "conv2d"),)

KEY_TABLE: dict[str, tuple[tuple[str, str], ...]] = {
    "inception_v3": (
        ("stem.conv1a", "Conv2d_1a_3x3"),
        ("stem.conv2a", "Conv2d_2a_3x3"),
        ("stem.conv2b", "Conv2d_2b_3x3"),
        ("stem.conv3b", "Conv2d_3b_1x1"),
        ("stem.conv4a", "Conv2d_4a_3x3"),
        *_block("blocks_a.0", "Mixed_5b", _V3_A),
        *_block("blocks_a.1", "Mixed_5c", _V3_A),
        *_block("blocks_a.2", "Mixed_5d", _V3_A),
        ("reduction_a.branch0", "Mixed_6a.branch3x3"),
        ("reduction_a.branch1.0", "Mixed_6a.branch3x3dbl_1"),
        ("reduction_a.branch1.1", "Mixed_6a.branch3x3dbl_2"),
        ("reduction_a.branch1.2", "Mixed_6a.branch3x3dbl_3"),
        *_block("blocks_b.0", "Mixed_6b", _V3_B),
        *_block("blocks_b.1", "Mixed_6c", _V3_B),
        *_block("blocks_b.2", "Mixed_6d", _V3_B),
        *_block("blocks_b.3", "Mixed_6e", _V3_B),
        ("reduction_b.branch0.0", "Mixed_7a.branch3x3_1"),
        ("reduction_b.branch0.1", "Mixed_7a.branch3x3_2"),
        ("reduction_b.branch1.0", "Mixed_7a.branch7x7x3_1"),
        ("reduction_b.branch1.1", "Mixed_7a.branch7x7x3_2"),
        ("reduction_b.branch1.2", "Mixed_7a.branch7x7x3_3"),
        ("reduction_b.branch1.3", "Mixed_7a.branch7x7x3_4"),
        *_block("blocks_c.0", "Mixed_7b", _V3_C),
        *_block("blocks_c.1", "Mixed_7c", _V3_C),
        ("aux", "AuxLogits"),  # conv0, conv1, fc: same names (torchvision weights only)
        ("head.fc", "fc"),
    ),
    "inception_v4": (
        ("stem.conv1a", "features.0"),
        ("stem.conv2a", "features.1"),
        ("stem.conv2b", "features.2"),
        ("stem.mixed_3a_conv", "features.3.conv"),
        ("stem.mixed_4a_branch0", "features.4.branch0"),
        ("stem.mixed_4a_branch1", "features.4.branch1"),
        ("stem.mixed_5a_conv", "features.5.conv"),
        *[(f"blocks_a.{i}", f"features.{6 + i}") for i in range(4)],  # Inception-A x 4
        ("reduction_a", "features.10"),
        *[(f"blocks_b.{i}", f"features.{11 + i}") for i in range(7)],  # Inception-B x 7
        ("reduction_b", "features.18"),
        *[row for i in range(3) for row in _block(f"blocks_c.{i}", f"features.{19 + i}", _V4_C)],  # Inception-C x 3
        ("head.fc", "last_linear"),
    ),
    "inception_resnet_v2": (
        ("stem.conv1a", "conv2d_1a"),
        ("stem.conv2a", "conv2d_2a"),
        ("stem.conv2b", "conv2d_2b"),
        ("stem.conv3b", "conv2d_3b"),
        ("stem.conv4a", "conv2d_4a"),
        ("stem.mixed_5b", "mixed_5b"),
        *[
            row
            for i in range(10)
            for row in (*_block(f"blocks_a.{i}", f"repeat.{i}", _IR_UP), (f"blocks_a.{i}", f"repeat.{i}"))
        ],
        ("reduction_a", "mixed_6a"),
        *[
            row
            for i in range(20)
            for row in (*_block(f"blocks_b.{i}", f"repeat_1.{i}", _IR_UP), (f"blocks_b.{i}", f"repeat_1.{i}"))
        ],
        ("reduction_b", "mixed_7a"),
        *[
            row
            for i in range(9)
            for row in (*_block(f"blocks_c.{i}", f"repeat_2.{i}", _IR_UP), (f"blocks_c.{i}", f"repeat_2.{i}"))
        ],
        ("blocks_c.9.up.conv", "block8.conv2d"),  # the final, linear Inception-ResNet-C
        ("blocks_c.9", "block8"),
        ("conv_7b", "conv2d_7b"),
        ("head.fc", "classif"),
    ),
}
# The key of each network's first convolution (checked to recognise a file's layout) and classifiers.
PUBLISHED_FIRST_CONV = {
    "inception_v3": "Conv2d_1a_3x3.conv.weight",
    "inception_v4": "features.0.conv.weight",
    "inception_resnet_v2": "conv2d_1a.conv.weight",
}
FIRST_CONV = "stem.conv1a.conv.weight"
CLASSIFIERS = ("head.fc", "aux.fc")


def map_published_key(model: str, key: str) -> str:
    """Rename one published (timm) state-dict key to ours through `KEY_TABLE`; KeyError if no row covers it."""
    rows = _published_to_ours(model)
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # longest module path first
        prefix = ".".join(parts[:cut])
        if prefix in rows:
            return f"{rows[prefix]}.{'.'.join(parts[cut:])}"
    raise KeyError(f"no row of KEY_TABLE[{model!r}] covers the published key {key!r}")


_ROWS_CACHE: dict[str, dict[str, str]] = {}


def _published_to_ours(model: str) -> dict[str, str]:
    if model not in _ROWS_CACHE:
        rows = {published: ours for ours, published in KEY_TABLE[model]}
        if len(rows) != len(KEY_TABLE[model]):
            raise AssertionError(f"KEY_TABLE[{model!r}] maps one published module twice")
        _ROWS_CACHE[model] = rows
    return _ROWS_CACHE[model]


def convert_published(model: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A published (timm-layout) state dict renamed to our module names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = map_published_key(model, key)
        if new in out:
            raise WeightsError(f"two published keys map onto {new}; the file is not a {model} checkpoint")
        out[new] = value
    return out


# -- finding and reading files --------------------------------------------------------------------------------


def weights_dir() -> Path:
    """Folder searched for manually downloaded published weights: $INCEPTIONNET_WEIGHTS_DIR or ~/.cache/inceptionnet."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV, Path.home() / ".cache" / "inceptionnet")).expanduser()


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


def published_layout(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which network's published (timm) layout a state dict has, or None."""
    for model, key in PUBLISHED_FIRST_CONV.items():
        if key in state:
            return model
    return None


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
    return Preprocessing(
        input_size=int(d["input_size"]),
        mean=tuple(d["mean"]),
        std=tuple(d["std"]),
        crop_fraction=float(d["crop_fraction"]),
        interpolation=str(d["interpolation"]),
    )
