"""A network of ours written in timm's layout: a folder that timm loads, giving the same logits.

timm (1.0) has three of our networks, under our names: `inception_v3`, `inception_v4` and
`inception_resnet_v2` (the released network). `save_timm_folder(model, folder)` writes

- `model.safetensors`: the state dict under timm's module names, `KEY_TABLE` (keys.py) read backwards;
  the tensors keep their layouts (both sides are PyTorch convolutions, BatchNorms and linear layers),
  and the auxiliary head is left out (timm's v4 and IR-v2 have none; its v3 is built without one);
- `config.json`: timm's hub configuration (`architecture`, `num_classes`, `num_features`,
  `global_pool`, `label_names` when the classes are named, `model_args`, and `pretrained_cfg` with
  the network's own preprocessing and timm's names of the first convolution and the classifier).

timm then loads the folder as a whole (`timm.create_model("local-dir:FOLDER", pretrained=True)`) or
the file alone (`timm.create_model("inception_v4", num_classes=N, checkpoint_path="FOLDER/model.safetensors")`).
timm itself is not needed to write the folder. What timm does not have is refused with a
`WeightsError` naming it (`timm_architecture`): Inception-ResNet-v1, the paper's Inception-ResNet-v2,
a width multiplier, residual scales other than the released 0.17 / 0.10 / 0.20, and an
Inception-v3 that averages without the padding (timm's v3 pools count it: count_include_pad=True).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from inceptionnet._version import __version__
from inceptionnet.atomic import atomic_write
from inceptionnet.card import pretrained_cfg
from inceptionnet.models import InceptionNetwork
from inceptionnet.models.inception_resnet import IR_V2_RELEASED
from inceptionnet.weights.files import CONFIG_FILE, WEIGHTS_FILE
from inceptionnet.weights.keys import KEY_TABLE, map_published_key
from inceptionnet.weights.record import FORMAT_NAME
from inceptionnet.weights.tags import WeightsError

# Our name -> timm's name of the same network, and timm's module names of its first convolution and classifier.
TIMM_ARCHITECTURES: dict[str, str] = {
    "inception_v3": "inception_v3",
    "inception_v4": "inception_v4",
    "inception_resnet_v2": "inception_resnet_v2",
}
_TIMM_MODULES = {  # (first_conv, classifier), as in timm's own pretrained configs
    "inception_v3": ("Conv2d_1a_3x3.conv", "fc"),
    "inception_v4": ("features.0.conv", "last_linear"),
    "inception_resnet_v2": ("conv2d_1a.conv", "classif"),
}
# Why the rest has no timm counterpart.
_NOT_IN_TIMM = {
    "inception_resnet_v1": "timm has no Inception-ResNet-v1 (no weights were ever published for it)",
    "inception_resnet_v2_paper": (
        "timm has no Inception-ResNet-v2 as the paper draws it: its inception_resnet_v2 is the released network "
        "(the v3 stem with Mixed_5b, 10 / 20 / 10 blocks, Conv2d_7b), our inception_resnet_v2"
    ),
}
_AUX = "aux."


def timm_architecture(model: InceptionNetwork) -> str:
    """timm's name of `model`'s network, or a WeightsError naming what timm lacks to build the same network."""
    if not isinstance(model, InceptionNetwork):
        raise WeightsError(f"only an inceptionnet network can be written in timm's layout, not {type(model).__name__}")
    name = model.model_name
    if name not in TIMM_ARCHITECTURES:
        reason = _NOT_IN_TIMM.get(name, f"timm has no counterpart of {name}")
        raise WeightsError(f"cannot write {name} in timm's layout: {reason}. timm has {', '.join(TIMM_ARCHITECTURES)}")
    arch = TIMM_ARCHITECTURES[name]
    options = model.build_options
    width = options.get("width", 1.0)
    if width != 1.0:
        raise WeightsError(
            f"cannot write this {name} in timm's layout: timm's {arch} has the paper's channel counts only, "
            f"no width multiplier (this network has width={width})"
        )
    scales = options.get("scales")
    if scales is not None and tuple(scales) != IR_V2_RELEASED.scales:
        fixed = " / ".join(f"{s:g}" for s in IR_V2_RELEASED.scales)
        raise WeightsError(
            f"cannot write this {name} in timm's layout: timm's {arch} fixes the residual scales at {fixed} "
            f"(the released network); this one has scales={tuple(scales)}"
        )
    if name == "inception_v3" and not options.get("count_include_pad", False):
        raise WeightsError(
            "cannot write this inception_v3 in timm's layout: timm's inception_v3 (like torchvision's) counts the "
            "zero padding in its 3x3 average pools, this network was built with count_include_pad=False "
            "(TensorFlow's arithmetic), so timm would compute other logits. Networks built from published v3 "
            "weights have count_include_pad=True; train with it to export to timm"
        )
    return arch


def timm_state_dict(model: InceptionNetwork) -> dict[str, torch.Tensor]:
    """`model`'s state dict under timm's module names (without the auxiliary head), on the CPU, contiguous."""
    arch = timm_architecture(model)
    rows = _ours_to_published(model.model_name)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(_AUX)}  # aux: training only
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = _rename(key, rows, model.model_name)
        if map_published_key(model.model_name, new) != key:  # the table read both ways must agree
            raise AssertionError(f"KEY_TABLE[{model.model_name!r}] does not map {new!r} back onto {key!r}")
        out[new] = value.detach().contiguous().cpu()
    if len(out) != len(state):
        raise AssertionError(f"two of our keys map onto one key of timm's {arch}")
    return out


def timm_config(model: InceptionNetwork) -> dict[str, Any]:
    """The config.json of timm's hub layout for `model`: made from its card (its network, classes and preprocessing)."""
    arch = timm_architecture(model)
    first_conv, classifier = _TIMM_MODULES[arch]
    card = model.card
    cfg = pretrained_cfg(card)
    labels = cfg.pop("label_names", None)
    cfg.pop("architecture")
    cfg.update(
        custom_load=False,
        input_size=list(cfg["input_size"]),
        min_input_size=list(cfg["min_input_size"]),
        mean=list(cfg["mean"]),
        std=list(cfg["std"]),
        pool_size=[_final_grid(card.preprocessing.input_size)] * 2,
        first_conv=first_conv,
        classifier=classifier,
    )
    config: dict[str, Any] = {
        "architecture": arch,
        "num_classes": card.num_classes,
        "num_features": model.num_features,
        "global_pool": "avg",
    }
    if labels is not None:
        config["label_names"] = list(labels)
    config["model_args"] = {
        "num_classes": card.num_classes,
        "in_chans": card.in_chans,
        "drop_rate": card.options.get("drop_rate", model.head.drop.p),
        "global_pool": "avg",
    }
    config["pretrained_cfg"] = cfg
    config["exported_by"] = {  # provenance; timm ignores it
        "package": FORMAT_NAME,
        "version": __version__,
        "model_name": card.model_name,
        "model_options": {k: v for k, v in card.options.items() if k != "aux_logits"},
        "weights": card.weights_name,
    }
    return config


def save_timm_folder(model: InceptionNetwork, folder: str | os.PathLike[str]) -> Path:
    """Write `model` as a folder in timm's hub layout (model.safetensors + config.json); returns the folder.

    Load it with `timm.create_model("local-dir:FOLDER", pretrained=True)`, or the weights alone with
    `timm.create_model(ARCH, num_classes=N, checkpoint_path="FOLDER/model.safetensors")` (add `in_chans=C`
    for other than 3 input channels). Raises WeightsError, before writing anything, for a network timm
    does not have (`timm_architecture`) and for a folder that holds one of our model folders. Each
    file is written atomically, config.json last.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WeightsError(f"{folder} exists and is not a folder; name a folder for the timm layout")
    _refuse_our_model_folder(folder)
    state = timm_state_dict(model)
    config = timm_config(model)
    atomic_write(folder / WEIGHTS_FILE, safetensors.torch.save(state, metadata={"format": "pt"}))
    atomic_write(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return folder


# -- helpers ------------------------------------------------------------------------------------------------------


def _ours_to_published(model_name: str) -> dict[str, str]:
    rows = {ours: published for ours, published in KEY_TABLE[model_name]}
    if len(rows) != len(KEY_TABLE[model_name]):
        raise AssertionError(f"KEY_TABLE[{model_name!r}] maps one of our modules twice")
    return rows


def _rename(key: str, rows: dict[str, str], model_name: str) -> str:
    """One of our keys under timm's name: its longest module path that has a row, the rest of the key kept."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in rows:
            return f"{rows[prefix]}.{'.'.join(parts[cut:])}"
    raise WeightsError(f"no row of KEY_TABLE[{model_name!r}] covers our key {key!r}; timm has no place for it")


def _final_grid(size: int) -> int:
    """Side of the last feature map for a size x size input (8 at 299): the same valid reductions in all three.

    Stride-2 3x3 conv, 3x3 conv, stride-2 reduction, 3x3 conv, then three stride-2 reductions (all valid).
    """

    def halve(s: int) -> int:
        return (s - 3) // 2 + 1

    return halve(halve(halve(halve(halve(size) - 2) - 2)))


def _refuse_our_model_folder(folder: Path) -> None:
    """Never overwrite one of our model folders (a run's model/, say) with the timm layout."""
    config = folder / CONFIG_FILE
    if not config.is_file():
        return
    try:
        content = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        content = None
    if isinstance(content, dict) and content.get("format") == FORMAT_NAME:
        raise WeightsError(
            f"{folder} holds an inceptionnet model folder; write the timm layout to another folder "
            "(it would replace that folder's weights and config.json)"
        )
