"""A Triton Python-backend model: the with-preprocessing ONNX file of its version folder on the CPU.

`export --format triton --triton-backend python` copies this file to <model_name>/1/model.py, next to
model.onnx. It runs in Triton's Python environment, which needs numpy and either onnxruntime (used when
present) or openvino. Triton hands `execute` the requests its dynamic batcher grouped: their uint8
pixels (n_i, H, W, 3) run as one batch, and the probabilities are split back, n_i rows per request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

ONNX_FILE = "model.onnx"

Runner = Callable[[np.ndarray], np.ndarray]


def onnxruntime_runner(path: Path, input_name: str, output_name: str) -> tuple[Runner, str] | None:
    """The ONNX file on ONNX Runtime's CPU provider and the engine's name; None where onnxruntime is missing."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(pixels: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: pixels})[0]

    return run, f"ONNX Runtime {onnxruntime.__version__}"


def openvino_runner(path: Path, input_name: str, output_name: str) -> tuple[Runner, str] | None:
    """The ONNX file compiled by OpenVINO for the CPU and the engine's name; None where openvino is missing."""
    try:
        import openvino
    except ImportError:
        return None
    # f32 asked for: on a CPU with bf16 units OpenVINO would compute in bf16, probabilities off by 1e-4 and more
    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    output = compiled.output(output_name)

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.array(compiled({input_name: pixels})[output])  # a copy: the next call reuses the buffer

    return run, f"OpenVINO {openvino.__version__}"


class TritonPythonModel:
    """One CPU instance of the model; Triton calls initialize once, execute per batch, finalize at unload."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        if args["model_instance_kind"] not in ("CPU", "MODEL"):
            raise ValueError(
                f"{args['model_name']} runs its ONNX file on the CPU, but config.pbtxt asks for a "
                f"{args['model_instance_kind']} instance; use kind: KIND_CPU, or for a GPU the repository of "
                "`inceptionnet export --format triton --triton-backend onnxruntime --triton-device gpu`"
            )
        self.input_name = str(config["input"][0]["name"])
        self.output_name = str(config["output"][0]["name"])
        path = Path(args["model_repository"]) / args["model_version"] / ONNX_FILE
        for opener in (onnxruntime_runner, openvino_runner):
            if (opened := opener(path, self.input_name, self.output_name)) is not None:
                self.run, engine = opened
                break
        else:
            raise ImportError(
                f"{args['model_name']} needs onnxruntime or openvino in Triton's Python environment; "
                "install one there (pip install onnxruntime)"
            )
        pb_utils.Logger.log_info(f"{args['model_name']}: {path} runs on {engine}, CPU")

    def execute(self, requests: list[Any]) -> list[Any]:
        pixels = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        probabilities = self.run(np.concatenate(pixels))
        ends = np.cumsum([len(p) for p in pixels])[:-1]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)])
            for part in np.split(probabilities, ends)
        ]

    def finalize(self) -> None:
        del self.run  # releases the engine's session before Triton unloads the model
