"""A Triton Inference Server model repository of one network (`export --format triton`).

    DIR/<model_name>/config.pbtxt   how Triton serves it
    DIR/<model_name>/labels.txt     one class name per line, in output order
    DIR/<model_name>/1/model.onnx   version 1: the ONNX file with preprocessing (export/preprocessing.py)
    DIR/<model_name>/1/model.py     the Python backend only: assets/triton/model.py, which runs model.onnx

The model is the with-preprocessing graph, uint8 (N, H, W, 3) pixels in and probabilities out, not
plain logits: a client then sends decoded, resized, cropped images as they are and reads
probabilities (or Triton's top-k classification with the labels), with no normalisation constants to
copy into every client and no chance of a client normalising differently from training. The batch
dimension is dynamic (up to `max_batch`), so Triton's dynamic batching can group requests; the
config's dims are those of the ONNX file without the batch. ONNX Runtime serves on CPU or GPU
instances, OpenVINO on CPU ones. The Python backend is for a Triton built without the ONNX Runtime
backend: its model.py runs the same file on ONNX Runtime or OpenVINO inside Triton's Python
environment, on CPU instances, with the same inputs, outputs and dynamic batching.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from inceptionnet.atomic import atomic_write
from inceptionnet.card import ModelCard
from inceptionnet.export.formats import MAX_DYNAMIC_BATCH, ExportResult
from inceptionnet.export.preprocessing import INPUT_NAME, OUTPUT_NAME, export_onnx_with_preprocessing
from inceptionnet.models import InceptionNetwork

BACKENDS = ("onnxruntime", "openvino", "python")
CPU_ONLY_BACKENDS = ("openvino", "python")
DEVICES = ("cpu", "gpu")
DEFAULT_MAX_BATCH = 32
MAX_QUEUE_DELAY_US = 100  # how long Triton may hold a request to batch it with the next ones
LABELS_FILE = "labels.txt"
MODEL_FILE = "model.onnx"
PYTHON_MODEL_FILE = "model.py"
PYTHON_MODEL_ASSET = "assets/triton/model.py"  # package data, copied as it is


@dataclass(frozen=True)
class TritonRepository:
    model_dir: Path  # DIR/<model_name>
    config: Path
    labels: Path
    export: ExportResult  # the ONNX file and its check


def write_triton_repository(
    model: InceptionNetwork,
    output: str | Path,
    *,
    backend: str = "onnxruntime",
    max_batch: int = DEFAULT_MAX_BATCH,
    device: str = "cpu",
    input_size: int | None = None,
) -> TritonRepository:
    """Write the model repository of `model` under `output` (see the module's docstring); returns its files."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown Triton backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ValueError(f"unknown Triton instance device {device!r}; choose one of: {', '.join(DEVICES)}")
    if backend in CPU_ONLY_BACKENDS and device == "gpu":
        raise ValueError(
            f"the {backend} backend's model runs on CPU instances; use --triton-backend onnxruntime for gpu"
        )
    if not 1 <= max_batch <= MAX_DYNAMIC_BATCH:
        raise ValueError(f"--max-batch must be between 1 and {MAX_DYNAMIC_BATCH}, got {max_batch}")
    model_dir = Path(output) / model.model_name
    result = export_onnx_with_preprocessing(
        model, model_dir / "1" / MODEL_FILE, input_size=input_size, dynamic_batch=True
    )
    labels = model_dir / LABELS_FILE
    atomic_write(labels, "".join(f"{name}\n" for name in label_lines(model.card)).encode())
    config = model_dir / "config.pbtxt"
    text = config_pbtxt(model.card, input_size=result.input_size, backend=backend, max_batch=max_batch, device=device)
    atomic_write(config, text.encode())
    if backend == "python":
        code = resources.files("inceptionnet").joinpath(PYTHON_MODEL_ASSET).read_bytes()
        atomic_write(model_dir / "1" / PYTHON_MODEL_FILE, code)
    return TritonRepository(model_dir, config, labels, result)


def label_lines(card: ModelCard) -> list[str]:
    """One label per output: the card's class names, else "class <index>"."""
    names = card.class_names
    return list(names) if names is not None else [f"class {i}" for i in range(card.num_classes)]


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """The batch sizes dynamic batching aims for: a quarter, a half and all of `max_batch`."""
    return sorted({max(1, max_batch // 4), max(1, max_batch // 2), max_batch})


def config_pbtxt(card: ModelCard, *, input_size: int, backend: str, max_batch: int, device: str) -> str:
    """Triton's model configuration (protobuf text format) of the with-preprocessing ONNX file; the same
    inputs, outputs and batching for every backend (the Python backend's default file is model.py)."""
    model_file = f'default_model_filename: "{MODEL_FILE}"\n' if backend == "openvino" else ""
    preferred = ", ".join(str(b) for b in preferred_batch_sizes(max_batch))
    return (
        f'name: "{card.model_name}"\n'
        f'backend: "{backend}"\n'
        f"{model_file}"
        f"max_batch_size: {max_batch}\n"
        "input [\n"
        "  {\n"
        f'    name: "{INPUT_NAME}"\n'
        "    data_type: TYPE_UINT8\n"
        "    format: FORMAT_NHWC\n"
        f"    dims: [ {input_size}, {input_size}, 3 ]\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        f'    name: "{OUTPUT_NAME}"\n'
        "    data_type: TYPE_FP32\n"
        f"    dims: [ {card.num_classes} ]\n"
        f'    label_filename: "{LABELS_FILE}"\n'
        "  }\n"
        "]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}\n"
        "}\n"
        "instance_group [\n"
        "  {\n"
        "    count: 1\n"
        f"    kind: KIND_{device.upper()}\n"
        "  }\n"
        "]\n"
    )
