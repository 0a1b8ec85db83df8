"""Int8 post-training static quantization: a folder with an int8 ONNX file that OpenVINO or ONNX Runtime runs.

`quantize_model` exports the inference network to ONNX (BatchNorm folded, dynamic batch), prepares it
(`quant_pre_process`), measures the range of every activation on calibration images read with the
network's own evaluation preprocessing, and writes ONNX Runtime's `quantize_static` QDQ file: int8
weights per output channel (symmetric; rounded by GPTQ, quantization.gptq), uint8 activations per
tensor, QuantizeLinear / DequantizeLinear pairs that both engines fuse into int8 kernels. The folder
(model.int8.onnx + config.json) records the network's model card, the calibration and the quantization;
`load_quantized` runs it on OpenVINO where installed (the faster engine), else ONNX Runtime.
docs/export.md says why and what it costs in accuracy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inceptionnet._version import __version__
from inceptionnet.atomic import atomic_write
from inceptionnet.export.formats import export_card, export_model
from inceptionnet.export.runtimes import (
    EngineNetwork,
    EngineUnavailable,
    engine_installed,
    first_installed,
    onnx_runner,
)
from inceptionnet.models import InceptionNetwork
from inceptionnet.quantization.calibration import (
    CALIBRATION_BATCH,
    DEFAULT_METHOD,
    METHODS,
    CalibrationBatches,
    CalibrationSource,
    calibration_set,
    ort_calibration,
    read_calibration,
)
from inceptionnet.quantization.gptq import hessians, round_weights
from inceptionnet.quantization.int8folder import (
    CONFIG_FILE,
    FORMAT,
    MODEL_FILE,
    describe_quantized,
    is_quantized,
)

# 256 images: the measured agreement with fp32 stops improving well before (docs/export.md), and
# reading and calibrating 256 images at 299 px takes about a minute on two cores (~1 MB per image held;
# GPTQ's rounding adds about two minutes for Inception-v4).
DEFAULT_IMAGES = 256
KEEP_FP32 = ("first_conv", "classifier")  # the nodes that may stay in float (`keep_fp32`)
DEFAULT_KEEP_FP32: tuple[str, ...] = ("classifier",)  # logits never clipped to the calibrated range
# Int8 weights: "gptq" (closer to fp32 on every network measured) or "nearest" (as quantize_static rounds).
ROUNDINGS = ("gptq", "nearest")
DEFAULT_ROUNDING = "gptq"
CHECK_IMAGES = 32  # calibration images on which the written file is compared with the fp32 network
_INSTALL = "pip install 'inceptionnet[openvino]' (or 'inceptionnet[onnxruntime]')"


@dataclass(frozen=True)
class QuantizeResult:
    """What `quantize_model` wrote and how well the int8 file reproduces the fp32 network."""

    folder: Path
    model_file: Path
    method: str  # calibration method
    rounding: str  # how the int8 weights were rounded
    calibration_images: int  # images the ranges were measured on
    skipped: int  # unreadable calibration images, left out
    fp32_nodes: tuple[str, ...]  # ONNX nodes kept in float32
    seconds: float  # export, calibration and quantization
    check_engine: str | None  # the engine the check ran on (None: not checked)
    check_images: int
    top1_agreement: float | None  # fraction of check images whose int8 top-1 class is the fp32 one (single-label)
    max_logit_diff: float | None  # max |int8 - fp32| logit over the check images
    # Multi-label: the fraction of (image, class) decisions (sigmoid >= threshold) equal to fp32's, and of images
    # whose decisions all are.
    label_agreement: float | None = None
    exact_agreement: float | None = None


def load_quantized(path: str | os.PathLike[str], *, engine: str = "auto", threads: int | None = None) -> EngineNetwork:
    """The int8 network of a quantized folder, run by `engine` ("auto": OpenVINO if installed, else ONNX Runtime)."""
    model_file, card = describe_quantized(path)
    engine = first_installed() if engine == "auto" else engine  # onnx_runner names an unknown or missing one
    if engine is None:
        raise EngineUnavailable(f"running an int8 network needs OpenVINO or ONNX Runtime: {_INSTALL}")
    threads = threads or torch.get_num_threads()
    runner = onnx_runner(model_file, engine, threads=threads)
    network = EngineNetwork(runner, engine=engine, precision="int8", card=card, threads=threads, onnx_file=model_file)
    return network.eval()


def quantize_model(
    model: InceptionNetwork,
    calibration: CalibrationSource,
    output: str | os.PathLike[str],
    *,
    images: int = DEFAULT_IMAGES,
    method: str = DEFAULT_METHOD,
    keep_fp32: Sequence[str] = DEFAULT_KEEP_FP32,
    rounding: str = DEFAULT_ROUNDING,
    engine_check: str | None = "auto",
) -> QuantizeResult:
    """Quantize `model` to int8 with `images` calibration images; write the folder `output`; check it.

    `calibration` is a split of a data source (e.g. a metadata folder), a folder of images (any layout,
    searched recursively) or a list of image files; unreadable images are skipped and counted. `method` is
    the calibration method (METHODS), `keep_fp32` names nodes left in float32 (KEEP_FP32), `rounding` how
    the int8 weights are rounded (ROUNDINGS). The folder is then loaded on `engine_check` ("auto",
    "openvino", "onnxruntime"; None: no check) and compared with the fp32 network on CHECK_IMAGES images.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of: {', '.join(METHODS)}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; choose one of: {', '.join(ROUNDINGS)}")
    unknown = sorted(set(keep_fp32) - set(KEEP_FP32))
    if unknown:
        raise ValueError(f"cannot keep {unknown} in float32; choose among: {', '.join(KEEP_FP32)}")
    if model.in_chans != 3:
        raise ValueError(f"calibration reads RGB images; this network takes {model.in_chans} input channels")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("quantization runs on the CPU: pass the network on the CPU (model.cpu())")
    if not engine_installed("onnxruntime"):
        raise EngineUnavailable(f"quantizing needs ONNX Runtime: {_INSTALL}")
    folder = _output_folder(output)
    batch, skipped = read_calibration(calibration_set(calibration), model, images=images)
    start = time.perf_counter()
    was_training = model.training
    try:
        with tempfile.TemporaryDirectory(prefix="inceptionnet-int8-") as tmp:
            model_bytes, fp32_nodes = _quantize(model, batch, Path(tmp), method, keep_fp32, rounding)
    finally:
        model.train(was_training)
    (folder / CONFIG_FILE).unlink(missing_ok=True)  # a folder being rewritten is not a quantized folder
    atomic_write(folder / MODEL_FILE, model_bytes)
    seconds = time.perf_counter() - start
    config = _config(model, batch, method=method, skipped=skipped, fp32_nodes=fp32_nodes, rounding=rounding)
    _write_config(folder, config)
    result = QuantizeResult(
        folder, folder / MODEL_FILE, method, rounding, len(batch), skipped, fp32_nodes, seconds, None, 0, None, None
    )
    if engine_check is None:
        return result
    check = check_quantized(folder, model, batch[:CHECK_IMAGES], engine=engine_check)
    _write_config(folder, {**config, "check": check})
    checked = ("top1_agreement", "max_logit_diff", "label_agreement", "exact_agreement")
    found = {key: check.get(key) for key in checked}
    return dataclasses.replace(result, check_engine=check["engine"], check_images=check["images"], **found)


def _output_folder(output: str | os.PathLike[str]) -> Path:
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output {folder} is a file; name a folder (it will hold {MODEL_FILE} and {CONFIG_FILE})")
    if (folder / CONFIG_FILE).exists() and not is_quantized(folder):
        raise ValueError(f"--output {folder} holds another {CONFIG_FILE} (a model folder?); name a new folder")
    return folder


def _quantize(
    model: InceptionNetwork, batch: torch.Tensor, tmp: Path, method: str, keep_fp32: Sequence[str], rounding: str
) -> tuple[bytes, tuple[str, ...]]:
    """The int8 QDQ file's bytes and the names of the nodes kept in float32."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    export_model(model, format="onnx", output=tmp / "fp32.onnx", input_size=batch.shape[-1], dynamic_batch=True)
    quant_pre_process(str(tmp / "fp32.onnx"), str(tmp / "prepared.onnx"))
    prepared = onnx.load(str(tmp / "prepared.onnx"))
    fp32_nodes = _nodes(prepared.graph, keep_fp32)
    calibrate, options = ort_calibration(method)
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram methods print their progress
        quantize_static(
            str(tmp / "prepared.onnx"),
            str(tmp / MODEL_FILE),
            CalibrationBatches(batch, prepared.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(fp32_nodes),
            calibrate_method=calibrate,
            extra_options=options,
        )
    quantized = onnx.load(str(tmp / MODEL_FILE))
    if rounding == "gptq":
        reader = CalibrationBatches(batch, prepared.graph.input[0].name)
        done, total = round_weights(quantized, prepared, hessians(prepared, reader))
        if done < total:  # the file would not be what config.json says
            raise RuntimeError(f"GPTQ rounded {done} of {total} convolutions; use --rounding nearest")
    quantized.metadata_props.add(key="precision", value="int8")
    return quantized.SerializeToString(), fp32_nodes


def _nodes(graph: Any, roles: Sequence[str]) -> tuple[str, ...]:
    """The names of the nodes that play `roles`: the convolution reading the images, the last Gemm / MatMul."""
    names = []
    if "first_conv" in roles:
        names += [n.name for n in graph.node if n.op_type == "Conv" and graph.input[0].name in n.input][:1]
    if "classifier" in roles:
        names += [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")][-1:]
    return tuple(names)


def _config(
    model: InceptionNetwork,
    batch: torch.Tensor,
    *,
    method: str,
    skipped: int,
    fp32_nodes: tuple[str, ...],
    rounding: str,
) -> dict[str, Any]:
    """config.json: the format tag, the file, the card at the calibrated size, the quantization and calibration."""
    import onnxruntime

    card = export_card(model, input_size=batch.shape[-1])
    return {
        "format": FORMAT,
        "version": __version__,
        "model_file": MODEL_FILE,
        **card.to_dict(),
        "quantization": {
            "tool": f"onnxruntime {onnxruntime.__version__} quantize_static, QDQ",
            "weights": "int8, per output channel, symmetric",
            "rounding": rounding,
            "activations": "uint8, per tensor, asymmetric",
            "fp32_nodes": list(fp32_nodes),
        },
        "calibration": {"method": method, "images": len(batch), "skipped": skipped, "seed": 0},
    }


def _write_config(folder: Path, config: dict[str, Any]) -> None:
    atomic_write(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())


def check_quantized(
    folder: Path, model: InceptionNetwork, images: torch.Tensor, *, engine: str = "auto"
) -> dict[str, Any]:
    """Top-1 agreement (multi-label: label and exact-match agreement at the card's thresholds) and max logit
    difference of the int8 folder against the fp32 `model` on `images`."""
    network = load_quantized(folder, engine=engine)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = torch.cat([model(b) for b in images.split(CALIBRATION_BATCH)]).float()
    finally:
        model.train(was_training)
    got = torch.cat([network(b) for b in images.split(CALIBRATION_BATCH)])
    check = {"engine": network.engine, "images": len(images), "max_logit_diff": (got - expected).abs().max().item()}
    if model.card.label_mode != "multi":
        return {**check, "top1_agreement": (got.argmax(1) == expected.argmax(1)).float().mean().item()}
    thresholds = torch.tensor(model.card.decision_thresholds())
    same = (torch.sigmoid(got) >= thresholds) == (torch.sigmoid(expected) >= thresholds)
    return {
        **check,
        "label_agreement": same.float().mean().item(),
        "exact_agreement": same.all(1).float().mean().item(),
    }
