"""The network a command runs for inference: a model specification made ready on an engine.

`open_for_inference(spec)` is what `predict`, `eval` and `bench` call. A specification that names
an int8 folder of `inceptionnet quantize` opens that folder on OpenVINO or ONNX Runtime; any other
(a network name, NAME:WEIGHTS, a run, a model folder, a weights file, hf-hub:ORG/NAME) is built by
`factory.load_model` and made ready by `engines.inference_network`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from inceptionnet.export.runtimes import DescribedNetwork
from inceptionnet.factory import load_model
from inceptionnet.inference.engines import Log, choose_engine, engine_device, inference_network
from inceptionnet.quantization.int8folder import is_quantized
from inceptionnet.quantization.running import load_quantized
from inceptionnet.ranks import Ranks

INT8_ENGINES = ("auto", "onnxruntime", "openvino")


def names_int8_folder(spec: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None) -> bool:
    """Whether `spec` (or `weights`) is an int8 folder written by `inceptionnet quantize`."""
    return any(p is not None and os.path.exists(p) and is_quantized(p) for p in (spec, weights))


def inference_device(
    specs: Sequence[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    engine: str = "auto",
    dtype: str | None = None,
    device: str | torch.device | None = None,
    ranks: Ranks | None = None,
    check: bool = True,
) -> torch.device:
    """Where the networks `specs` name will run, with the request checked before any of them loads (seconds).

    An int8 folder runs on the CPU; anything else where `engine` runs (`engine_device`; under torchrun,
    `ranks` gives this rank's GPU), and with `check`, what the engine cannot run on it (bf16 on a CPU
    without it, a CPU engine on a GPU, a missing engine) is refused here, naming the fix.
    """
    if any(names_int8_folder(spec, weights) for spec in specs):
        return torch.device("cpu")
    dev = engine_device(engine, device)
    dev = ranks.device_of_rank(dev) if ranks is not None else dev
    if check:
        choose_engine(engine, dtype=dtype or "fp32", device=dev)
    return dev


def open_for_inference(
    spec: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    engine: str = "auto",
    dtype: str | None = None,
    device: str | torch.device | None = None,
    input_size: int | None = None,
    images: int | None = None,
    pretrained: bool = True,
    log: Log | None = None,
    **options: Any,
) -> DescribedNetwork:
    """The network `spec` names, on `engine` in `dtype` (`inference_network`), or the int8 folder it names.

    An int8 folder runs as it was quantized: on a CPU engine, at its own input size, with no other
    options; asking it for torch, another dtype or other options is an error naming the fix.
    """
    if not names_int8_folder(spec, weights):
        model = load_model(spec, weights=weights, pretrained=pretrained, **options)
        return inference_network(
            model, engine, dtype=dtype, input_size=input_size, device=device, images=images, log=log
        )
    folder = weights if weights is not None else spec
    if engine not in INT8_ENGINES:
        raise ValueError(f"{folder} is an int8 network for ONNX Runtime or OpenVINO; use --engine auto (not {engine})")
    if dtype not in (None, "fp32", "int8"):
        raise ValueError(f"{folder} computes in int8; drop --dtype {dtype} (or run the fp32 network it came from)")
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"{folder} runs on the CPU (int8 on ONNX Runtime or OpenVINO); use --device cpu")
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ValueError(f"{folder} is a quantized network as it was written; drop {', '.join(given)}")
    model = load_quantized(folder, engine=engine, log=log)
    if input_size not in (None, model.preprocessing.input_size):
        raise ValueError(
            f"{folder} was quantized for {model.preprocessing.input_size}x{model.preprocessing.input_size} inputs; "
            f"drop --input-size {input_size} or quantize again at that size"
        )
    return model
