"""The networks one benchmark run times: ours on its engine, and each reference, as timed steps.

Every contender gets the same random batch (float32, NCHW, seeded) and turns it into one step:
- ours: on the engine of the configuration (`BenchConfig.engine`). For inference on torch with the
  default settings, and on ONNX Runtime or OpenVINO, it is the network `inference_network` returns, the
  one `inceptionnet predict` and `eval` run; the torch-only settings (unfused, NCHW,
  torch.compile, training) build the torch network as asked;
- "timm", "timm-channels-last": timm's network on PyTorch, eager, in NCHW or channels_last, under
  autocast for low precision;
- "onnxruntime", "openvino": timm's network exported to ONNX by timm's own exporter (once per run,
  shared by both engines) and run with torch's thread count, OpenVINO on a static shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from inceptionnet.devices import dtype_named
from inceptionnet.export.fuse import fuse_for_inference
from inceptionnet.export.runtimes import onnx_runner
from inceptionnet.factory import create_model
from inceptionnet.inference.engines import TorchNetwork, inference_network
from inceptionnet.models.merged import merge_heads
from inceptionnet.models.summary import count_macs
from inceptionnet.perf.config import BenchConfig
from inceptionnet.perf.measure import Step, infer_step, train_step
from inceptionnet.perf.references import TORCH_REFERENCES, build_reference, export_reference, reference_name
from inceptionnet.quantization.running import load_quantized


@dataclass(frozen=True)
class Contender:
    """One network of the run: its key ("ours" or a reference), its label, what runs it, its timed step."""

    key: str
    label: str
    engine: str
    dtype: str
    step: Step
    macs: int
    notes: tuple[str, ...]


def batch(cfg: BenchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's random images (float32, NCHW, on the CPU) and labels, the same for every contender."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.batch_size, 3, cfg.input_size, cfg.input_size, generator=gen)
    return x, torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=gen)


def torch_step(model: nn.Module, cfg: BenchConfig, *, channels_last: bool, cast: bool, device: torch.device) -> Step:
    """One timed step of `model` on PyTorch: inference of a batch, or a full training step with SGD.

    `cast`: the model's weights are already in the low dtype, so the batch is cast to it; otherwise a
    low dtype runs under autocast.
    """
    dtype = dtype_named(cfg.dtype)
    x, y = (t.to(device) for t in batch(cfg))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if cast:
        x = x.to(dtype)
    autocast = dtype if dtype != torch.float32 and not cast else None
    if cfg.mode == "infer":
        return infer_step(model, x, autocast=autocast)
    return train_step(model, x, y, autocast=autocast)


def _our_macs(cfg: BenchConfig) -> int:
    with torch.device("meta"):  # shapes only: counting needs no weights and no arithmetic
        shapes = create_model(cfg.model, width=cfg.width, num_classes=cfg.num_classes)
        return count_macs(shapes, input_size=cfg.input_size)


def ours(cfg: BenchConfig, device: torch.device, say: Callable[[str], None]) -> Contender:
    """Our network on `cfg.engine`: what predict runs, or the torch network in the torch-only settings asked for."""
    torch.manual_seed(cfg.seed)
    name = f"inceptionnet {cfg.model}"
    if cfg.int8 is not None:
        return _int8(cfg, name, say)
    model = create_model(cfg.model, width=cfg.width, num_classes=cfg.num_classes)
    as_predict = cfg.mode == "infer" and cfg.fused and cfg.channels_last and not cfg.compile
    if as_predict:
        if cfg.engine == "torch":  # what inference_network builds, without its check that the CPU has bf16
            net = TorchNetwork(model, dtype=cfg.dtype, device=device)
        else:
            net = inference_network(model, cfg.engine, dtype=cfg.dtype, input_size=cfg.input_size, cache=False, log=say)
        x = batch(cfg)[0].to(device)

        def infer() -> None:
            with torch.inference_mode():
                net(x)

        how = "fused, channels_last, weights cast once" if cfg.engine == "torch" else "BN-folded ONNX export"
        note = f"ours: {cfg.engine}, {cfg.dtype}, {how}; float32 NCHW input as predict gives it"
        return Contender("ours", f"{name} ({cfg.engine})", cfg.engine, cfg.dtype, infer, _our_macs(cfg), (note,))
    return _ours_on_torch(model, cfg, device, name)


def _int8(cfg: BenchConfig, name: str, say: Callable[[str], None]) -> Contender:
    """The int8 network of an `inceptionnet quantize` folder, on the engine it runs on."""
    net = load_quantized(cfg.int8, engine=cfg.engine, log=say)
    x = batch(cfg)[0]

    def infer() -> None:
        net(x)

    note = f"ours: {cfg.int8}, int8 (QDQ ONNX) on {net.engine}; float32 NCHW input as predict gives it"
    return Contender("ours", f"{name} ({net.engine} int8)", net.engine, "int8", infer, _our_macs(cfg), (note,))


def _ours_on_torch(model: nn.Module, cfg: BenchConfig, device: torch.device, name: str) -> Contender:
    """Our torch network as the torch-only settings ask (unfused, NCHW, compiled, training)."""
    notes = []
    # BN is folded away in the fused network, so no statistics need fp32: cast the weights once
    # instead of autocasting every op.
    cast = bool(cfg.fused) and cfg.dtype != "fp32"
    if cfg.fused:
        model = fuse_for_inference(model)
    if cast:
        notes.append(f"ours: fused network with {cfg.dtype} weights (no autocast)")
    if cfg.mode == "train" and cfg.merged_heads:
        merge_heads(model)  # as training trains it
    elif cfg.mode == "train":
        notes.append("ours: the blocks as written (--no-merged-heads); train merges the sibling 1x1 heads")
    if cfg.checkpointing:
        model.set_grad_checkpointing(True)
    model = model.to(device)
    if cast:
        model = model.to(dtype_named(cfg.dtype))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        model = torch.compile(model)
        notes.append("ours: torch.compile (default mode); the references run eagerly")
    label = f"{name} (torch" + (", fused" if cfg.fused else "") + (", compiled" if cfg.compile else "") + ")"
    step = torch_step(model, cfg, channels_last=cfg.channels_last, cast=cast, device=device)
    return Contender("ours", label, "torch", cfg.dtype, step, _our_macs(cfg), tuple(notes))


def _timm_macs(cfg: BenchConfig) -> int:
    with torch.device("meta"):
        return count_macs(build_reference(cfg.model, num_classes=cfg.num_classes), input_size=cfg.input_size)


def timm_on_torch(cfg: BenchConfig, key: str, device: torch.device) -> Contender:
    """timm's network, eager, under autocast for low precision, in NCHW ("timm") or channels_last."""
    dtype = cfg.reference_dtype or cfg.dtype
    channels_last = key == "timm-channels-last"
    torch.manual_seed(cfg.seed)
    model = build_reference(cfg.model, num_classes=cfg.num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    layout = "channels_last" if channels_last else "NCHW"
    precision = dtype + (" under autocast" if dtype != "fp32" else "")
    step = torch_step(model, replace(cfg, dtype=dtype), channels_last=channels_last, cast=False, device=device)
    label = f"timm {reference_name(cfg.model)} (torch, {layout})"
    note = f"{key}: {precision}, {layout}, eager"
    return Contender(key, label, "torch", dtype, step, _timm_macs(cfg), (note,))


def timm_on_engine(cfg: BenchConfig, key: str, onnx_file: Path) -> Contender:
    """timm's network exported to ONNX, run by the engine `key` with torch's thread count."""
    dtype = cfg.reference_dtype or cfg.dtype
    threads = torch.get_num_threads()
    runner = onnx_runner(onnx_file, key, threads=threads, precision=dtype)
    x = batch(cfg)[0].numpy()

    def infer() -> None:
        runner(x)

    shape = "static shape per batch size" if key == "openvino" else "dynamic batch"
    exporter = "timm.utils.onnx.onnx_export (dynamo)"
    note = f"{key}: timm's network exported by {exporter}, {dtype}, {threads} threads, {shape}"
    label = f"timm {reference_name(cfg.model)} ({key})"
    return Contender(key, label, key, dtype, infer, _timm_macs(cfg), (note,))


def build_contenders(
    cfg: BenchConfig, device: torch.device, workdir: Path, say: Callable[[str], None]
) -> list[Contender]:
    """Ours, then each reference in the order asked; timm's ONNX file (in `workdir`) is made once if needed."""
    contenders = [ours(cfg, device, say)]
    onnx_file = None
    for key in cfg.references:
        if key in TORCH_REFERENCES:
            contenders.append(timm_on_torch(cfg, key, device))
            continue
        if onnx_file is None:
            say(f"exporting timm's {reference_name(cfg.model)} to ONNX (seconds to a minute) ...")
            torch.manual_seed(cfg.seed)
            reference = build_reference(cfg.model, num_classes=cfg.num_classes)
            onnx_file = export_reference(reference, batch(cfg)[0], workdir / "timm.onnx")
        contenders.append(timm_on_engine(cfg, key, onnx_file))
    return contenders
