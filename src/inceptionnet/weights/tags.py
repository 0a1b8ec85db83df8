"""The published-weight catalogue: which checkpoints exist, where they live, how their images are prepared.

One `WeightTag` per published checkpoint (timm's conversions of the TF-slim, torchvision and Gluon
releases, stored on the Hugging Face hub), with the preprocessing and build options its numbers
need and the accuracy it scores; `get_weight_tag` resolves a tag name. `WeightsError`, raised by
everything that finds, reads or fits weights, lives here because the catalogue is the root of that
chain. Every public name is re-exported by `inceptionnet.weights`, the public entry point for
weights (docs/weights.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inceptionnet.models.base import Preprocessing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_DIR_ENV = "INCEPTIONNET_WEIGHTS_DIR"


class WeightsError(ValueError):
    """Weights that cannot be found, read, or fitted to the requested network (the message says why and how)."""


# -- the catalogue --------------------------------------------------------------------------------------------


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


# -- where manual downloads are looked for --------------------------------------------------------------------


def weights_dir() -> Path:
    """Folder searched for manually downloaded published weights: $INCEPTIONNET_WEIGHTS_DIR or ~/.cache/inceptionnet."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV, Path.home() / ".cache" / "inceptionnet")).expanduser()
