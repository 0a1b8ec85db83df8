"""What several commands share: options made from TrainConfig fields (train, study), the engine options
(eval, predict), status lines on stderr and `--json PATH|-`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import Any

from inceptionnet.atomic import atomic_write
from inceptionnet.inference.engines import DTYPES, ENGINES
from inceptionnet.models import list_models
from inceptionnet.training.config import TrainConfig

MODEL_HELP = (
    "network name (with its default published weights), NAME:WEIGHTS, a run folder, a model folder, "
    "a weights file, hf-hub:ORG/NAME (docs/weights.md)"
)


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


def add_model_options(p: argparse.ArgumentParser, *, also: str) -> None:
    """--model and --weights, as the commands that run one network name it (docs/weights.md); `also` ends
    the --model help with what else this command takes or refuses."""
    p.add_argument("--model", default="inception_v4", metavar="MODEL", help=f"{MODEL_HELP}; default inception_v4{also}")
    add_weights_option(p)


def add_weights_option(p: argparse.ArgumentParser) -> None:
    """--weights, for a model given by its name."""
    p.add_argument("--weights", help="published tag (e.g. tf_in1k), file or folder for a --model NAME")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """--engine and --dtype, shared by the commands that run networks for inference (eval, predict)."""
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="what runs the network: auto (default; on the CPU: openvino, else onnxruntime if installed, else torch; "
        "elsewhere torch), torch (fused, channels_last), onnxruntime or openvino (CPU; the network is exported to "
        "ONNX first, once per weights)",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="fp32",
        help="compute precision (default fp32); bf16 needs a CPU with AVX512-BF16 or AMX, or a GPU; fp16 a GPU",
    )


def say(message: str) -> None:
    """A progress or status line on stderr, apart from the results on stdout."""
    print(message, file=sys.stderr)


def write_json(path: str, obj: Any) -> None:
    """`--json PATH` of every command: write `obj` to PATH (atomically), or print it alone when PATH is '-'."""
    text = json.dumps(obj, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        atomic_write(path, text.encode())
