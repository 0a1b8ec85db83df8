"""Running an ONNX file on a CPU inference engine: ONNX Runtime or OpenVINO.

Both are optional (`pip install "inceptionnet[openvino]"` or `"inceptionnet[onnxruntime]"`).
`onnx_runner(path, engine)` returns a function from a float32 NCHW batch to the file's first
output; the engine runs with `threads` intra-op threads (default: torch's thread count, so the
engines and PyTorch are compared on the same cores). OpenVINO compiles for each batch size it
sees and keeps the last OPENVINO_SHAPES of them (a server's batches vary in size);
`precision="bf16"` asks it to compute in bfloat16 (CPUs with AVX512-BF16 or AMX); ONNX Runtime
computes in the file's own types.

`EngineNetwork` wraps a runner into a module that stands where a network does (predict, eval,
bench), with the network's model card; `inceptionnet.inference.engines.inference_network` builds
one from a network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from inceptionnet.card import ModelCard, Preprocessing
from inceptionnet.extras import installed, missing
from inceptionnet.models.layers import check_input_size

ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
# Compiled batch sizes OpenVINO keeps: predict and eval use two (the batch and the last one), a server up to
# five (its batches padded to 1, 2, 4, 8, 16); each holds its own copy of the repacked weights.
OPENVINO_SHAPES = 6

Runner = Callable[[np.ndarray], np.ndarray]


class EngineUnavailable(RuntimeError, ValueError):
    """The engine asked for cannot run what was asked (ONNX Runtime and bf16). Not installed: MissingExtra.

    Also a ValueError: it is a bad request (the command line prints it as `error: ...`, with the fix).
    """


def engine_installed(engine: str) -> bool:
    """Whether the Python package of `engine` ("onnxruntime" or "openvino") can be imported."""
    return installed({"onnxruntime": "onnxruntime", "openvino": "openvino"}[engine])


def first_installed(engines: tuple[str, ...] = ("openvino", "onnxruntime")) -> str | None:
    """The first of `engines` that is installed (by default OpenVINO, the faster on the CPUs measured), or None."""
    return next((e for e in engines if engine_installed(e)), None)


def check_engine(engine: str, precision: str = "fp32") -> None:
    """Raise an error naming the fix unless `engine` is installed and computes in `precision` on the CPU.

    The one check of a CPU engine: an unknown name or precision is a ValueError; ONNX Runtime asked for
    anything but fp32 an EngineUnavailable; a missing package MissingExtra.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if engine == "onnxruntime" and precision != "fp32":
        raise EngineUnavailable(
            "ONNX Runtime runs these networks in fp32 only; use --engine openvino (or torch) for bf16"
        )
    if not engine_installed(engine):
        raise missing(engine, extra=engine, purpose=f"the {engine} engine")


def onnx_runner(
    path: str | os.PathLike[str], engine: str, *, threads: int | None = None, precision: str = "fp32"
) -> Runner:
    """A function running the ONNX file at `path` on `engine` ("onnxruntime" or "openvino")."""
    check_engine(engine, precision)
    threads = threads or torch.get_num_threads()
    if engine == "onnxruntime":
        return _onnxruntime(os.fspath(path), threads)
    return _openvino(os.fspath(path), threads, precision)


def _onnxruntime(path: str, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    (first,) = session.get_inputs()
    _check_float_input(path, first.type, "tensor(float)")
    name = first.name

    def run(images: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(images, dtype=np.float32)})[0]

    return run


def _openvino(path: str, threads: int, precision: str) -> Runner:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    _check_float_input(path, model.inputs[0].get_element_type().get_type_name(), "f32")
    config: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
    }
    compiled: dict[tuple[int, ...], Any] = {}

    def run(images: np.ndarray) -> np.ndarray:
        shape = tuple(images.shape)
        if shape not in compiled:  # a static shape per batch size: a little faster than a dynamic one
            if len(compiled) >= OPENVINO_SHAPES:
                del compiled[next(iter(compiled))]  # the shape compiled first goes
            model.reshape(list(shape))
            compiled[shape] = core.compile_model(model, "CPU", config).create_infer_request()
        request = compiled[shape]
        request.infer([np.ascontiguousarray(images, dtype=np.float32)])
        return request.get_output_tensor(0).data.copy()

    return run


def _check_float_input(path: str, given: str, expected: str) -> None:
    """Refuse a file whose input is not float NCHW images, such as one exported --with-preprocessing (uint8
    NHWC pixels): fed the normalised images the engines make, it would give wrong results without an error."""
    if given != expected:
        raise ValueError(
            f"{path} takes {given} input, not the normalised float images (N, C, H, W) this engine feeds; a file "
            "exported with --with-preprocessing takes uint8 pixels (N, H, W, 3) and is for serving (Triton, "
            "docs/export.md): export the network without --with-preprocessing to run it here"
        )


@runtime_checkable
class Carded(Protocol):
    """Anything that describes the network it is by a model card: an InceptionNetwork (fused or not), a
    DescribedNetwork (on an engine, int8), or a module that declares `card` itself."""

    @property
    def card(self) -> ModelCard: ...


def network_card(model: nn.Module) -> ModelCard | None:
    """The card of a network (an InceptionNetwork, fused or not, one on an engine, an int8 one); None for a
    module that declares none (evaluation then uses the default preprocessing and leaves outputs unnamed)."""
    return model.card if isinstance(model, Carded) else None


class DescribedNetwork(nn.Module):
    """A module that stands for a network: it carries the network's card for predict, eval and bench.

    `model_name`, `preprocessing`, `class_names`, `num_classes`, `in_chans`, `min_input_size` and
    `weights_name` read the card; `input_size` is the one size the runner takes where it takes one
    (`card.input_size_fixed`: an ONNX file exported for that size), else None (any size from
    `min_input_size` up). Subclasses say what runs it: `engine`, `precision`, `threads` (intra-op
    threads; None where not recorded).
    """

    engine: str
    precision: str
    threads: int | None

    def __init__(self, card: ModelCard) -> None:
        super().__init__()
        self.card = card
        self.training = False  # built for inference: eval mode from the start

    @property
    def model_name(self) -> str:
        return self.card.model_name

    @property
    def preprocessing(self) -> Preprocessing:
        return self.card.preprocessing

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return self.card.class_names

    @property
    def num_classes(self) -> int:
        return self.card.num_classes

    @property
    def in_chans(self) -> int:
        return self.card.in_chans

    @property
    def min_input_size(self) -> int:
        return self.card.min_input_size

    @property
    def weights_name(self) -> str | None:
        return self.card.weights_name

    @property
    def input_size(self) -> int | None:
        return self.card.preprocessing.input_size if self.card.input_size_fixed else None

    def check_input(self, images: torch.Tensor, engine: str) -> None:
        """Reject a batch this network cannot take, naming the fix."""
        if self.training:
            raise RuntimeError(f"{self.model_name} on {engine} is inference-only; call .eval()")
        check_input_size(images, self.min_input_size, self.in_chans, self.model_name)
        size = self.input_size
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            h, w = images.shape[-2:]
            raise ValueError(
                f"{self.model_name} on {engine} was exported for {size}x{size} input, got {h}x{w}; resize the "
                f"images to {size}x{size}, or make the inference network again with input_size={h} (--input-size)"
            )


class EngineNetwork(DescribedNetwork):
    """A network that runs on an inference engine, usable where a network is (predict, eval, bench).

    It carries the network's card (`DescribedNetwork`) and maps a float NCHW batch to float32 logits
    on the CPU. It has no parameters and cannot be trained; `engine` and `precision` say what runs it,
    `threads` how many intra-op threads (None where not recorded).
    """

    def __init__(
        self,
        runner: Runner,
        *,
        engine: str,
        precision: str,
        card: ModelCard,
        threads: int | None = None,
        onnx_file: Path | None = None,
    ) -> None:
        super().__init__(card)
        self.runner = runner
        self.engine = engine
        self.precision = precision
        self.threads = threads
        self.onnx_file = onnx_file  # the file the runner reads, where known

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images, self.engine)
        if images.device.type != "cpu":
            raise ValueError(
                f"the {self.engine} engine runs on the CPU; the images are on {images.device} (use --device cpu)"
            )
        return torch.from_numpy(self.runner(images.detach().float().contiguous().numpy()))
