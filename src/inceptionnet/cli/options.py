"""Command-line options made from TrainConfig fields, typed and explained as the fields are (train, study)."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from inceptionnet.models import list_models
from inceptionnet.training.config import TrainConfig


def add_config_option(p: argparse._ActionsContainer, name: str, *, default: object, suffix: str = "") -> None:
    """`--field-name` for a TrainConfig field, typed and explained as the field is."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    kind = typing.get_type_hints(TrainConfig)[name]
    options: dict = {"dest": name, "default": default, "help": f.metadata["help"] + suffix}
    if kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is typing.Literal:
        options["choices"] = typing.get_args(kind)
    elif name == "model":
        options["choices"] = list_models()
    else:
        options["type"] = next(t for t in (int, float, str) if t is kind or t in typing.get_args(kind))
    p.add_argument("--" + name.replace("_", "-"), **options)
