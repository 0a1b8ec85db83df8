"""Int8 post-training static quantization: a folder with an int8 ONNX file that OpenVINO or ONNX Runtime runs.

`quantize_model` exports the inference network to ONNX (BatchNorm folded, dynamic batch), prepares it
(`quant_pre_process`), measures the range of every activation on calibration images read with the
network's own evaluation preprocessing, and writes ONNX Runtime's `quantize_static` QDQ file: int8
weights per output channel (symmetric; rounded by GPTQ, quantization.gptq), uint8 activations per
tensor, QuantizeLinear / DequantizeLinear pairs that both engines fuse into int8 kernels. The weights
span -127..127 for CPUs with VNNI or AMX, or -64..64 for every CPU (`target_cpu`, int8folder.TARGETS;
the default follows the CPU quantizing). The folder (model.int8.onnx + config.json) records the
network's model card, the calibration, the quantization and a check against fp32 on this machine; a
folder whose check falls below `min_agreement` is not written. `load_quantized` (quantization.running)
runs it on OpenVINO where installed (the faster engine), else ONNX Runtime. docs/export.md says why
and what it costs in accuracy.
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
from inceptionnet.export.runtimes import engine_installed
from inceptionnet.extras import missing
from inceptionnet.models import InceptionNetwork
from inceptionnet.quantization.calibration import (
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
    WEIGHT_RANGES,
    is_quantized,
    resolve_target,
    target_record,
)
from inceptionnet.quantization.running import (
    MIN_AGREEMENT,
    LowAgreement,
    check_quantized,
    load_quantized,
    require_agreement,
)

__all__ = [
    "MIN_AGREEMENT",
    "LowAgreement",
    "QuantizeResult",
    "check_quantized",
    "is_quantized",
    "load_quantized",
    "quantize_model",
]

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
    target_cpu: str = "vnni"  # the CPUs the weights are made for (int8folder.TARGETS)
    weight_range: int = 127  # the largest |int8 weight|
    notes: tuple[str, ...] = ()  # what the check said of this CPU (weights narrowed to run here)

    @property
    def agreement(self) -> float | None:
        """The check's agreement with fp32: top-1 (single-label) or label decisions (multi-label)."""
        return self.top1_agreement if self.label_agreement is None else self.label_agreement


def quantize_model(
    model: InceptionNetwork,
    calibration: CalibrationSource,
    output: str | os.PathLike[str],
    *,
    images: int = DEFAULT_IMAGES,
    method: str = DEFAULT_METHOD,
    keep_fp32: Sequence[str] = DEFAULT_KEEP_FP32,
    rounding: str = DEFAULT_ROUNDING,
    target_cpu: str = "auto",
    engine_check: str | None = "auto",
    min_agreement: float = MIN_AGREEMENT,
) -> QuantizeResult:
    """Quantize `model` to int8 with `images` calibration images; check it; write the folder `output`.

    `calibration` is a split of a data source (e.g. a metadata folder), a folder of images (any layout,
    searched recursively) or a list of image files; unreadable images are skipped and counted. `method` is
    the calibration method (METHODS), `keep_fp32` names nodes left in float32 (KEEP_FP32), `rounding` how
    the int8 weights are rounded (ROUNDINGS), `target_cpu` the CPUs they are made for (int8folder.TARGETS).
    The file is then loaded on `engine_check` ("auto", "openvino", "onnxruntime"; None: no check) and
    compared with the fp32 network on CHECK_IMAGES images; below `min_agreement` (0: no minimum) nothing
    is written and LowAgreement says why.
    """
    _check_options(model, method=method, rounding=rounding, keep_fp32=keep_fp32, min_agreement=min_agreement)
    target = resolve_target(target_cpu)
    folder = _output_folder(output)
    batch, skipped = read_calibration(calibration_set(calibration), model, images=images)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inceptionnet-int8-") as tmp:
        staged = Path(tmp) / "int8"  # the folder as it will be, checked before it replaces `folder`
        fp32_nodes = _quantize(model, batch, Path(tmp), staged / MODEL_FILE, method, keep_fp32, rounding, target)
        config = _config(model, batch, method=method, skipped=skipped, fp32_nodes=fp32_nodes, rounding=rounding)
        config["quantization"] |= target_record(target)
        _write_config(staged, config)
        result = QuantizeResult(
            folder, folder / MODEL_FILE, method, rounding, len(batch), skipped, fp32_nodes,
            time.perf_counter() - start, None, 0, None, None, target_cpu=target, weight_range=WEIGHT_RANGES[target],
        )  # fmt: skip
        if engine_check is not None:
            result, config = _checked(result, config, staged, model, batch, engine_check, min_agreement)
        (folder / CONFIG_FILE).unlink(missing_ok=True)  # a folder being rewritten is not a quantized folder
        atomic_write(folder / MODEL_FILE, (staged / MODEL_FILE).read_bytes())
        _write_config(folder, config)
    return result


def _check_options(
    model: InceptionNetwork, *, method: str, rounding: str, keep_fp32: Sequence[str], min_agreement: float
) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of: {', '.join(METHODS)}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; choose one of: {', '.join(ROUNDINGS)}")
    unknown = sorted(set(keep_fp32) - set(KEEP_FP32))
    if unknown:
        raise ValueError(f"cannot keep {unknown} in float32; choose among: {', '.join(KEEP_FP32)}")
    if not 0 <= min_agreement <= 1:
        raise ValueError(f"--min-agreement is a fraction from 0 (write any) to 1, got {min_agreement}")
    if model.in_chans != 3:
        raise ValueError(f"calibration reads RGB images; this network takes {model.in_chans} input channels")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("quantization runs on the CPU: pass the network on the CPU (model.cpu())")
    if not engine_installed("onnxruntime"):
        raise missing("onnxruntime", extra="onnxruntime", purpose="quantizing")


def _checked(
    result: QuantizeResult,
    config: dict[str, Any],
    staged: Path,
    model: InceptionNetwork,
    batch: torch.Tensor,
    engine: str,
    min_agreement: float,
) -> tuple[QuantizeResult, dict[str, Any]]:
    """The result and config.json with the check against fp32 on this machine; LowAgreement below the minimum."""
    notes: list[str] = []
    check = check_quantized(staged, model, batch[:CHECK_IMAGES], engine=engine, log=notes.append)
    require_agreement(check, min_agreement)
    found = {key: check.get(key) for key in ("top1_agreement", "max_logit_diff", "label_agreement", "exact_agreement")}
    result = dataclasses.replace(
        result, check_engine=check["engine"], check_images=check["images"], notes=tuple(notes), **found
    )
    return result, {**config, "check": check}


def _output_folder(output: str | os.PathLike[str]) -> Path:
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output {folder} is a file; name a folder (it will hold {MODEL_FILE} and {CONFIG_FILE})")
    if (folder / CONFIG_FILE).exists() and not is_quantized(folder):
        raise ValueError(f"--output {folder} holds another {CONFIG_FILE} (a model folder?); name a new folder")
    return folder


def _quantize(
    model: InceptionNetwork,
    batch: torch.Tensor,
    tmp: Path,
    output: Path,
    method: str,
    keep_fp32: Sequence[str],
    rounding: str,
    target: str,
) -> tuple[str, ...]:
    """Write the int8 QDQ file `output` (weights in the target's range); the names of the nodes kept in float32."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    was_training = model.training
    try:
        export_model(model, format="onnx", output=tmp / "fp32.onnx", input_size=batch.shape[-1], dynamic_batch=True)
    finally:
        model.train(was_training)
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
            reduce_range=WEIGHT_RANGES[target] < 127,  # ONNX Runtime's 7-bit weights: -64..64
            extra_options=options,
        )
    quantized = onnx.load(str(tmp / MODEL_FILE))
    if rounding == "gptq":
        reader = CalibrationBatches(batch, prepared.graph.input[0].name)
        done, total = round_weights(quantized, prepared, hessians(prepared, reader), limit=WEIGHT_RANGES[target])
        if done < total:  # the file would not be what config.json says
            raise RuntimeError(f"GPTQ rounded {done} of {total} convolutions; use --rounding nearest")
    quantized.metadata_props.add(key="precision", value="int8")
    atomic_write(output, quantized.SerializeToString())
    return fp32_nodes


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
            "rounding": rounding,
            "activations": "uint8, per tensor, asymmetric",
            "fp32_nodes": list(fp32_nodes),
        },
        "calibration": {"method": method, "images": len(batch), "skipped": skipped, "seed": 0},
    }


def _write_config(folder: Path, config: dict[str, Any]) -> None:
    atomic_write(folder / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
