"""Export a network for deployment (ONNX, TorchScript, torch.export program), checked against eager PyTorch.

The exported graph is the inference network: eval mode, logits only (never the auxiliary head), with
every BatchNorm folded into the convolution before it (`fold_batchnorm`: one biased convolution
instead of conv + BN, less work and fewer nodes per image). After writing the file, `export_model`
loads it back with the runtime that serves it (onnxruntime, `torch.jit.load`, `torch.export.load`),
runs it on a random batch and compares its logits with the unfolded eager network; a difference
above `tolerance` times the logits' scale (their largest magnitude, at least 1) is an error. Relative,
because float32 rounding grows with the logits: a network whose logits are in the thousands (one
fine-tuned briefly from fresh weights) differs by about 1e-6 of them, not by a fixed amount.

Each file carries what a deployment needs to use the logits (`export_metadata`): the network's
model card (`export_card`: `card.to_dict()`, with the preprocessing at the exported input size and
`input_size_fixed`), the format tag, the input size and the package version. ONNX keeps them as
`metadata_props` (one per key: strings as they are, everything else as JSON), TorchScript and
torch.export archives as the extra file `inceptionnet.json`; `read_export_metadata` reads them back
from any of the three, `read_export_card` the card alone.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inceptionnet._version import __version__
from inceptionnet.atomic import atomic_write
from inceptionnet.card import ModelCard
from inceptionnet.export.folding import fold_batchnorm
from inceptionnet.extras import missing, require
from inceptionnet.models import InceptionNetwork

FORMATS = ("onnx", "torchscript", "exported-program")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
DEFAULT_TOLERANCE = 1e-4  # max |exported - eager| over the logits' scale, max(1, max |logit|)
MAX_DYNAMIC_BATCH = 1024
METADATA_FILE = "inceptionnet.json"  # the extra file of TorchScript and torch.export archives


class ExportError(RuntimeError):
    """The export failed, or the exported artefact does not reproduce the eager network."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    input_size: int
    dynamic_batch: bool
    folded_batchnorms: int
    max_abs_diff: float  # exported vs eager logits on the check batch


class InferenceNetwork(nn.Module):
    """The network as deployed: images (N, C, H, W) -> logits, nothing else."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def default_output(model_name: str, fmt: str) -> Path:
    return Path(f"{model_name}{SUFFIXES[fmt]}")


def export_model(
    model: InceptionNetwork,
    *,
    format: str,
    output: str | os.PathLike[str] | None = None,
    input_size: int | None = None,
    dynamic_batch: bool = False,
    fold_bn: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Write `model` as `format` ("onnx", "torchscript" or "exported-program") and check it against eager.

    The input is (N, in_chans, input_size, input_size), input_size defaulting to the model's
    preprocessing (299). With `dynamic_batch` the batch dimension is symbolic (1..1024) and the check
    runs with a batch size different from the one traced; otherwise the batch size is fixed at 1.
    Raises ExportError if the exported logits differ from eager by more than `tolerance` times the logits'
    scale (their largest magnitude, at least 1).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    size = checked_input_size(model, input_size)
    path = Path(output) if output is not None else default_output(model.model_name, format)
    if format == "exported-program" and path.suffix != ".pt2":
        raise ValueError(f"torch.export programs are .pt2 archives; name the output {path.with_suffix('.pt2')}")
    path.parent.mkdir(parents=True, exist_ok=True)

    metadata = export_metadata(model, input_size=size)
    eager = InferenceNetwork(model).eval()
    deployed, folded = fold_batchnorm(eager) if fold_bn else (copy.deepcopy(eager).eval(), 0)
    in_chans = model.in_chans
    gen = torch.Generator().manual_seed(0)
    trace_batch, check_batch = (2, 3) if dynamic_batch else (1, 1)
    example = torch.randn(trace_batch, in_chans, size, size, generator=gen)
    check = torch.randn(check_batch, in_chans, size, size, generator=gen)

    with torch.no_grad():
        if format == "onnx":
            export_onnx(deployed, example, path, dynamic_batch, metadata)
            got = run_onnx(path, check)
        elif format == "torchscript":
            _export_torchscript(deployed, example, path, metadata)
            got = load_torchscript(path)(check)
        else:
            _export_program(deployed, example, path, dynamic_batch, metadata)
            got = torch.export.load(str(path)).module()(check)
        expected = eager(check)
    diff = (got.float() - expected.float()).abs().max().item()
    scale = max(1.0, expected.float().abs().max().item())
    if not diff <= tolerance * scale:
        raise ExportError(
            f"the exported {format} file {path} does not reproduce the eager network: max abs difference "
            f"of the logits {diff:.3g} > {tolerance:g} x their scale {scale:.3g}"
        )
    return ExportResult(path, format, size, dynamic_batch, folded, diff)


def checked_input_size(model: InceptionNetwork, input_size: int | None) -> int:
    """The square input size to export at: `input_size`, by default the preprocessing's, at least the minimum."""
    size = input_size or model.preprocessing.input_size
    if size < model.min_input_size:
        raise ValueError(
            f"input size {size} is below the {model.min_input_size}x{model.min_input_size} minimum of "
            f"{model.model_name}"
        )
    return size


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)


def export_card(model: InceptionNetwork, *, input_size: int) -> ModelCard:
    """The card of `model` exported at `input_size`: the file takes that size only, prepared at that size."""
    card = model.card
    return card.replace(
        preprocessing=dataclasses.replace(card.preprocessing, input_size=input_size), input_size_fixed=True
    )


def export_metadata(model: InceptionNetwork, *, input_size: int) -> dict[str, Any]:
    """What an exported file records about its network: the format tag, the package version, the network's
    card at the exported size (`export_card`) and that size."""
    card = export_card(model, input_size=input_size)
    return {"format": "inceptionnet", "version": __version__, **card.to_dict(), "input_size": input_size}


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `export_metadata` of an exported file (.onnx, TorchScript .pt, torch.export .pt2)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return {k: _from_prop(v) for k, v in props.items()}
    extra = {METADATA_FILE: ""}
    if path.suffix == ".pt2":
        torch.export.load(str(path), extra_files=extra)
    else:
        load_torchscript(path, extra_files=extra)
    if not extra[METADATA_FILE]:
        raise ValueError(f"{path} carries no {METADATA_FILE}; it was not exported by inceptionnet")
    return json.loads(extra[METADATA_FILE])


def read_export_card(path: str | os.PathLike[str]) -> ModelCard:
    """The model card an exported file carries (`export_card`); a CardError names what is missing."""
    return ModelCard.from_dict(read_export_metadata(path), source=str(path))


def _as_prop(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _from_prop(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a plain string (model name, weights, format)


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    dynamic_batch: bool,
    metadata: dict[str, Any],
    names: tuple[str, str] = ("images", "logits"),
) -> None:
    """Write `model` traced on `example` as an ONNX file carrying `metadata`; `names`: its input and output."""
    try:
        program = torch.onnx.export(
            model,
            (example,),
            None,
            dynamo=True,  # the torch.export-based exporter (needs onnxscript)
            input_names=[names[0]],
            output_names=[names[1]],
            dynamic_shapes=({0: _batch_dim()},) if dynamic_batch else None,  # the batch of the one input
            verbose=False,
        )
    except ModuleNotFoundError as err:
        raise missing(err.name or "onnxscript", extra="onnxruntime", purpose="ONNX export") from None
    program.model.metadata_props.update({k: _as_prop(v) for k, v in metadata.items()})
    _write_file(path, program.model_proto.SerializeToString())


def run_onnx(path: Path, images: torch.Tensor) -> torch.Tensor:
    """The first output of the ONNX file at `path` on `images` (any dtype the file takes), by ONNX Runtime."""
    ort = require("onnxruntime", extra="onnxruntime", purpose="checking the ONNX file")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    return torch.from_numpy(logits)


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        # torch.jit is deprecated upstream but still the way to produce a TorchScript file;
        # the input-size checks in forward are Python conditions on this example's shape, which
        # the trace rightly freezes (the batch dimension is not checked, so it stays free).
        # (torch 2.13 says so with a DeprecationWarning, 2.14 with a FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
        extra = {METADATA_FILE: json.dumps(metadata)}
        buffer = io.BytesIO()  # serialised in memory: the one disk write is _write_file's
        torch.jit.save(traced, buffer, _extra_files=extra)
    _write_file(path, buffer.getvalue())


def load_torchscript(
    path: str | os.PathLike[str], *, extra_files: dict[str, Any] | None = None
) -> torch.jit.ScriptModule:
    """`torch.jit.load` on CPU, without its upstream deprecation warning (TorchScript is what was asked for).

    `extra_files`: {name: ""} filled with the archive's extra files of those names (`METADATA_FILE`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)


def _export_program(
    model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, metadata: dict[str, Any]
) -> None:
    program = torch.export.export(
        model, (example,), dynamic_shapes={"images": {0: _batch_dim()}} if dynamic_batch else None
    )
    extra = {METADATA_FILE: json.dumps(metadata)}
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files=extra)
    _write_file(path, buffer.getvalue())


def _write_file(path: Path, data: bytes) -> None:
    """Write the exported file atomically; a disk error (full, read-only, no permission) is one ExportError
    naming the file and the cause, and leaves nothing at `path`."""
    try:
        atomic_write(path, data)
    except OSError as err:
        raise ExportError(
            f"could not write {path}: {err.strerror or err}; nothing was written there. Free space on that disk, "
            "or choose another --output"
        ) from None
