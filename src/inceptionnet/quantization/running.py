"""Running an int8 folder: on OpenVINO or ONNX Runtime, as this CPU computes it exactly, and checked against fp32.

`load_quantized` opens a folder of `inceptionnet quantize` on an engine. A folder made for VNNI CPUs
(8-bit weights) opened on an x86 CPU without VNNI or AMX would compute another network there (the
int8 kernels' 16-bit sums saturate, inceptionnet.cpu): its weights are narrowed to 7 bits in a copy
of the file (quantization.narrowing), and `log` is told so, with the fix. `check_quantized` compares
a folder with the fp32 network it came from, on this machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from inceptionnet.cpu import cpu_features
from inceptionnet.export.runtimes import EngineNetwork, first_installed, onnx_runner
from inceptionnet.extras import MissingExtra
from inceptionnet.models import InceptionNetwork
from inceptionnet.quantization.calibration import CALIBRATION_BATCH
from inceptionnet.quantization.int8folder import describe_quantized, int8_folder, weight_range
from inceptionnet.quantization.narrowing import narrow_weights

INSTALL = "pip install 'inceptionnet[openvino]' (or 'inceptionnet[onnxruntime]')"
# Below this agreement with fp32 on the check images (top-1; multi-label: label decisions) quantize writes no
# folder: the int8 network is not a faithful copy (docs/export.md, "int8 quantization"). 0 writes any.
MIN_AGREEMENT = 0.9
Log = Callable[[str], None]


class LowAgreement(ValueError):
    """The int8 network disagrees with fp32 on the check images more than the minimum allows."""


def load_quantized(
    path: str | os.PathLike[str], *, engine: str = "auto", threads: int | None = None, log: Log | None = None
) -> EngineNetwork:
    """The int8 network of a quantized folder, run by `engine` ("auto": OpenVINO if installed, else ONNX Runtime).

    `log` receives the line saying that the weights were narrowed for this CPU (a RuntimeWarning without it).
    """
    model_file, card = describe_quantized(path)
    engine = first_installed() if engine == "auto" else engine  # onnx_runner names an unknown or missing one
    if engine is None:
        raise MissingExtra(f"running an int8 network needs OpenVINO or ONNX Runtime: {INSTALL}", extra="openvino",
                           module="openvino")  # fmt: skip
    threads = threads or torch.get_num_threads()
    runnable, temp = _runnable_file(model_file, log)
    try:
        runner = onnx_runner(runnable, engine, threads=threads)
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    network = EngineNetwork(runner, engine=engine, precision="int8", card=card, threads=threads, onnx_file=runnable)
    if temp is not None:  # the engines may read the file lazily: keep it while the network lives
        weakref.finalize(network, shutil.rmtree, temp, ignore_errors=True)
    return network.eval()


def narrowing_notice(path: str | os.PathLike[str]) -> str | None:
    """What opening the folder on this CPU does to its weights, or None where it runs as it is."""
    cpu = cpu_features()
    if weight_range(path) <= cpu.int8_weight_range:
        return None
    return (
        f"{int8_folder(path)} has 8-bit weights, made for CPUs with VNNI or AMX; this CPU, {cpu.describe()}, has "
        "neither, and its int8 kernels would saturate on them: running it with its weights narrowed to 7 bits "
        "(-64..64). For the int8 network closest to fp32 here, quantize again on this CPU or with --target-cpu any"
    )


def _runnable_file(model_file: Path, log: Log | None) -> tuple[Path, Path | None]:
    """The file to run here: the folder's own, or a copy with its weights narrowed (in a temporary folder)."""
    notice = narrowing_notice(model_file)
    if notice is None:
        return model_file, None
    import onnx

    if log is not None:
        log(f"note: {notice}")
    else:
        warnings.warn(notice, RuntimeWarning, stacklevel=3)
    model = onnx.load(str(model_file))
    narrow_weights(model, cpu_features().int8_weight_range)
    temp = Path(tempfile.mkdtemp(prefix="inceptionnet-int8-narrowed-"))
    onnx.save(model, str(temp / model_file.name))
    return temp / model_file.name, temp


def check_quantized(
    folder: Path, model: InceptionNetwork, images: torch.Tensor, *, engine: str = "auto", log: Log | None = None
) -> dict[str, Any]:
    """Top-1 agreement (multi-label: label and exact-match agreement at the card's thresholds) and max logit
    difference of the int8 folder against the fp32 `model` on `images`, as this CPU runs the folder."""
    network = load_quantized(folder, engine=engine, log=log)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = torch.cat([model(b) for b in images.split(CALIBRATION_BATCH)]).float()
    finally:
        model.train(was_training)
    got = torch.cat([network(b) for b in images.split(CALIBRATION_BATCH)])
    check = {
        "engine": network.engine,
        "images": len(images),
        "cpu": cpu_features().describe(),
        "max_logit_diff": (got - expected).abs().max().item(),
    }
    if model.card.label_mode != "multi":
        return {**check, "top1_agreement": (got.argmax(1) == expected.argmax(1)).float().mean().item()}
    thresholds = torch.tensor(model.card.decision_thresholds())
    same = (torch.sigmoid(got) >= thresholds) == (torch.sigmoid(expected) >= thresholds)
    return {
        **check,
        "label_agreement": same.float().mean().item(),
        "exact_agreement": same.all(1).float().mean().item(),
    }


def require_agreement(check: dict[str, Any], min_agreement: float) -> None:
    """Raise LowAgreement, naming the fix, when the check's agreement is below `min_agreement`."""
    multi = check.get("label_agreement") is not None
    agreement = check["label_agreement"] if multi else check.get("top1_agreement")
    if agreement is None or agreement >= min_agreement:
        return
    what = "(image, class) decisions" if multi else "top-1 classes"
    raise LowAgreement(
        f"the int8 network agrees with fp32 on {agreement:.1%} of the {what} of {check['images']} check images "
        f"({check['engine']}, {check['cpu']}), below --min-agreement {min_agreement:g}: nothing written. A network "
        "whose largest logits are nearly tied (untrained or barely trained) does this; try --method minmax or more "
        "--images, or write it anyway with --min-agreement 0 and measure it on held-out images (docs/export.md, "
        "'int8 quantization')"
    )
