"""A run is a model: the model folder every run writes beside its checkpoints, RUN/model/.

After each evaluation the loop writes the network it has just evaluated (the weight average when
training keeps one) as a model folder (`inceptionnet.weights.save_model_folder`: config.json +
model.safetensors, the Hugging Face hub's layout) with its name, every build option, the class
folders it was trained on, the evaluation preprocessing at the run's input size, and the
validation numbers it scored. So the folder always holds the weights the run last reported, and
`create_model(weights=RUN)`, `inceptionnet eval --model RUN`, `predict --model RUN` and
`export RUN` take the run as it is.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from inceptionnet.models import Preprocessing
from inceptionnet.training.config import TrainConfig
from inceptionnet.weights import RUN_MODEL, save_model_folder

# The fields of an epoch record (runlog) that describe the weights written with it.
METRICS = ("epoch", "step", "val_top1_error", "val_top5_error")
# The scores beside them: a single-label run's records have the first, a multi-label run's the other two.
OTHER_METRICS = ("val_balanced_accuracy", "val_map", "val_exact_match")


def save_run_model(
    out_dir: str | Path,
    model: nn.Module,
    *,
    class_names: Sequence[str],
    preprocessing: Preprocessing,
    record: Mapping[str, Any],
    averaged: bool,
    cfg: TrainConfig | None = None,
    dataset: str | None = None,
) -> Path:
    """Write `model` (the network just evaluated, unwrapped) as the run's model folder `out_dir`/model/.

    `class_names`: the training folder's classes, in output order; `preprocessing`: the transform the
    run validated with; `record`: the epoch's record (its epoch, step and validation errors are kept);
    `averaged`: whether `model` is the weight average; `cfg`: the run's settings and `dataset` the data it
    trained on (both for README.md only; None leaves them out of it). Returns the folder.
    """
    missing = [k for k in METRICS if k not in record]
    if missing:
        raise ValueError(f"the epoch record lacks {missing}; pass the record that the evaluation of `model` wrote")
    return save_model_folder(
        Path(out_dir) / RUN_MODEL,
        model,
        class_names=class_names,
        preprocessing=preprocessing,
        metrics={k: record[k] for k in (*METRICS, *OTHER_METRICS) if k in record},
        weights="average" if averaged else "raw",
        dataset=dataset,
        command=train_command(cfg) if cfg is not None else None,
    )


def train_command(cfg: TrainConfig) -> str:
    """The `inceptionnet train` command line that sets `cfg`: one option per field that differs from the default.

    Each option is the field's name with dashes (cli/options.py); a field left at None is its default.
    """
    words = ["inceptionnet", "train"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value == f.default or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            words += [flag, *(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)
