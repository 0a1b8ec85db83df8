"""The int8 folder that `inceptionnet quantize` writes: FOLDER/model.int8.onnx and FOLDER/config.json.

config.json ("format": "inceptionnet-int8") holds the network's model card (`card.to_dict()` at the
quantized input size, which the file takes only) beside the calibration, the quantization (with the
CPUs its weights are made for: TARGETS) and the check against fp32. This module reads a folder
without opening an engine; quantization.quantize writes one, quantization.running runs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from inceptionnet.card import ModelCard
from inceptionnet.cpu import INT8_ANY_CPU_RANGE, INT8_FULL_RANGE, cpu_features

FORMAT = "inceptionnet-int8"  # config.json "format" of a quantized folder
MODEL_FILE = "model.int8.onnx"
CONFIG_FILE = "config.json"
# The CPUs an int8 file is made for (config.json "quantization": "target_cpu", "weight_range"), inceptionnet.cpu:
# "vnni": 8-bit weights (-127..127), exact on x86 CPUs with VNNI or AMX and on other architectures; opened on
# an x86 CPU without them, the weights are narrowed to -64..64 (quantization.narrowing).
# "any": 7-bit weights (-64..64), exact on every CPU. "auto" (quantize's default): "vnni" where the CPU
# quantizing has VNNI or AMX, else "any". Folders written before the field existed are "vnni".
TARGETS = ("auto", "vnni", "any")
WEIGHT_RANGES = {"vnni": INT8_FULL_RANGE, "any": INT8_ANY_CPU_RANGE}
MADE_FOR = {
    "vnni": "x86 CPUs with VNNI or AMX (AVX512-VNNI, AVX-VNNI, AMX-INT8) and non-x86 CPUs",
    "any": "every CPU: 7-bit weights, which x86 int8 kernels without VNNI compute without saturating",
}


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


def resolve_target(target: str) -> str:
    """`target` ("auto", "vnni", "any") as the CPUs the weights are made for: auto follows this CPU."""
    if target not in TARGETS:
        raise ValueError(f"unknown target CPU {target!r}; choose one of: {', '.join(TARGETS)}")
    if target != "auto":
        return target
    return "any" if cpu_features().int8_saturates else "vnni"


def target_record(target: str) -> dict[str, object]:
    """config.json's record of the CPUs the weights are made for ("vnni" or "any"), and of the CPU that made them."""
    bits = "8 bits, -127..127" if WEIGHT_RANGES[target] == INT8_FULL_RANGE else "7 bits, -64..64"
    return {
        "weights": f"int8 ({bits}), per output channel, symmetric",
        "target_cpu": target,
        "weight_range": WEIGHT_RANGES[target],
        "made_for": MADE_FOR[target],
        "quantized_on": cpu_features().describe(),
    }


def weight_range(path: str | os.PathLike[str]) -> int:
    """The largest |int8 weight| of a quantized folder's file: 127 (made for VNNI CPUs) or 64 (any CPU)."""
    config = json.loads((int8_folder(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    return int(config.get("quantization", {}).get("weight_range", INT8_FULL_RANGE))
