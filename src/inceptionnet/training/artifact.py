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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from inceptionnet.models import Preprocessing
from inceptionnet.weights import RUN_MODEL, save_model_folder

# The fields of an epoch record (runlog) that describe the weights written with it.
METRICS = ("epoch", "step", "val_top1_error", "val_top5_error")


def save_run_model(
    out_dir: str | Path,
    model: nn.Module,
    *,
    class_names: Sequence[str],
    preprocessing: Preprocessing,
    record: Mapping[str, Any],
    averaged: bool,
) -> Path:
    """Write `model` (the network just evaluated, unwrapped) as the run's model folder `out_dir`/model/.

    `class_names`: the training folder's classes, in output order; `preprocessing`: the transform the
    run validated with; `record`: the epoch's record (its epoch, step and validation errors are kept);
    `averaged`: whether `model` is the weight average. Returns the folder.
    """
    missing = [k for k in METRICS if k not in record]
    if missing:
        raise ValueError(f"the epoch record lacks {missing}; pass the record that the evaluation of `model` wrote")
    return save_model_folder(
        Path(out_dir) / RUN_MODEL,
        model,
        class_names=class_names,
        preprocessing=preprocessing,
        metrics={k: record[k] for k in METRICS},
        weights="average" if averaged else "raw",
    )
