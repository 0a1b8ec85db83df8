"""The int8 folder that `inceptionnet quantize` writes: FOLDER/model.int8.onnx and FOLDER/config.json.

config.json ("format": "inceptionnet-int8") holds the network's model card (`card.to_dict()` at the
quantized input size, which the file takes only) beside the calibration, the quantization and the
check against fp32. This module reads a folder without opening an engine; quantization.quantize
writes one and runs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from inceptionnet.card import ModelCard

FORMAT = "inceptionnet-int8"  # config.json "format" of a quantized folder
MODEL_FILE = "model.int8.onnx"
CONFIG_FILE = "config.json"


def is_quantized(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder written by `quantize_model` (or its model.int8.onnx)."""
    config = int8_folder(path) / CONFIG_FILE
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def describe_quantized(path: str | os.PathLike[str]) -> tuple[Path, ModelCard]:
    """A quantized folder's ONNX file and its network's card, read without opening an engine."""
    folder = int8_folder(path)
    if not is_quantized(folder):
        raise ValueError(
            f'{path} is not an int8 folder (no {CONFIG_FILE} with "format": "{FORMAT}"); '
            "write one with `inceptionnet quantize MODEL --calibration IMAGES --output FOLDER`"
        )
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    model_file = folder / config.get("model_file", MODEL_FILE)
    if not model_file.is_file():
        raise ValueError(
            f"{folder} has {CONFIG_FILE} but no {model_file.name}; copy the whole folder or quantize again"
        )
    card = ModelCard.from_dict(config, source=str(folder / CONFIG_FILE))
    return model_file, card.replace(input_size_fixed=True)  # the file was exported for that size, whatever it says


def int8_folder(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.parent if path.name == MODEL_FILE else path
