"""Run by test_quantize.py in a process started with ONEDNN_MAX_CPU_ISA=AVX2: OpenVINO then runs int8 as on a
CPU without VNNI (its 16-bit sums saturate). Writes what it measured as JSON.

    python int8_avx2_child.py MODEL_FOLDER CALIBRATION_DIR VNNI_INT8_FOLDER WORK_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from inceptionnet.cpu import cpu_features
from inceptionnet.data import eval_transform, read_image
from inceptionnet.export.runtimes import onnx_runner
from inceptionnet.factory import load_model
from inceptionnet.quantization.int8folder import CONFIG_FILE, MODEL_FILE
from inceptionnet.quantization.quantize import load_quantized, quantize_model


def main(model_folder: str, calibration: str, vnni_folder: str, work: str) -> None:
    torch.set_num_threads(1)
    model = load_model(model_folder).eval()
    transform = eval_transform(model.preprocessing)
    files = sorted(p for p in Path(calibration).rglob("*.jpg") if not p.name.startswith("corrupt"))
    images = torch.stack([transform(read_image(p)) for p in files])
    with torch.no_grad():
        fp32 = model(images)
    raw = torch.from_numpy(onnx_runner(Path(vnni_folder) / MODEL_FILE, "openvino", threads=1)(images.numpy()))
    notes: list[str] = []
    narrowed = load_quantized(vnni_folder, engine="openvino", threads=1, log=notes.append)(images)
    made = quantize_model(model, calibration, Path(work) / "here", images=64, method="minmax", engine_check="openvino")
    config = json.loads((made.folder / CONFIG_FILE).read_text())

    def compare(got: torch.Tensor) -> dict[str, float]:
        agreement = (got.argmax(1) == fp32.argmax(1)).float().mean().item()
        return {"max_logit_diff": (got - fp32).abs().max().item(), "top1_agreement": agreement}

    result = {
        "cpu": cpu_features().describe(),
        "spread": (fp32.max() - fp32.min()).item(),
        "raw_8bit": compare(raw),
        "narrowed_8bit": compare(narrowed),
        "notes": notes,
        "quantized_here": {"quantization": config["quantization"], "check": config["check"]},
    }
    (Path(work) / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:5])
