"""The vocabulary of TrainConfig's fields: the choices of its Literal-typed fields, the rules a continued run
follows for each field, and `knob`, which declares a field with its help text and rule.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from typing import Any, Literal

Optimizer = Literal["rmsprop_tf", "sgd", "adamw"]
LrSchedule = Literal["staircase", "cosine"]
Precision = Literal["fp32", "bf16", "fp16"]
ColorDistort = Literal["none", "fast", "full"]
ClassWeights = Literal["none", "balanced"]
SamplerKind = Literal["shuffle", "balanced"]
LabelMode = Literal["auto", "single", "multi"]
Augment = Literal["inception", "randaugment", "trivialaugment", "autoaugment"]

# What a continued run may do with a field (rundir.py decides from these):
# - "may_change": the same command with another value continues the run in its folder. These fields change
#   neither the network, the data nor the steps taken so far: they say how far to go (the staircase learning
#   rate is a function of the step alone; a cosine one follows a new `epochs` from there on), where and how
#   the same steps run (each image's augmentation is seeded by the image, not by the loader worker), and
#   what is logged and saved;
# - "resume_only": another value continues the run only with `--resume`, which prints the change;
# - "kept": not even `--resume` changes it: the checkpoint's network (its parameters, its auxiliary head, the
#   classes of its classifier: a dataset's label column) or its optimiser state (its kind, its parameter
#   groups) was built with it.
Resume = Literal["may_change", "resume_only", "kept"]
RESUME_RULES: tuple[Resume, ...] = typing.get_args(Resume)


def knob(default: Any, text: str, *, resume: Resume) -> Any:
    """A TrainConfig field: its default, its help text (`inceptionnet train --help`) and its `resume` rule."""
    return field(default=default, metadata={"help": text, "resume": resume})


def choice_errors(config: Any) -> list[str]:
    """A message for each field of the dataclass `config` declared with a Literal type whose value is none of
    its choices."""
    errors = []
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else ()
        value = getattr(config, f.name)
        if choices and value not in choices:
            errors.append(f"{f.name} {value!r}: choose one of {', '.join(choices)}")
    return errors
