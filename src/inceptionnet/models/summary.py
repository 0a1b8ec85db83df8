"""Stage table, parameter count and multiply-adds of a network, measured by running it: the one counter of both."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from inceptionnet.models.base import InceptionNetwork


@dataclass(frozen=True)
class StageRow:
    name: str
    kind: str  # class name, "4 x InceptionA" for a stack of blocks
    shape: tuple[int, int, int]  # H, W, C of the stage's output
    params: int


@dataclass(frozen=True)
class Summary:
    model_name: str
    input_size: int
    stages: list[StageRow]
    params: int
    macs: int  # multiply-adds of one image, counted by torch's FLOP counter (convs and the FC)
    min_input_size: int


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(model: nn.Module, *, input_size: int, in_chans: int = 3) -> int:
    """Multiply-adds of one `input_size` image in eval mode, counted by torch's FLOP counter (convs and FCs).

    Works on the meta device too, where it costs no arithmetic: build the model under `torch.device("meta")`.
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_chans, input_size, input_size, device=next(model.parameters()).device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Sequential) and len(module) > 0:
        names = {type(m).__name__ for m in module}
        if len(names) == 1:
            return f"{len(module)} x {names.pop()}"
    return type(module).__name__


def summarize(model: InceptionNetwork, *, input_size: int = 299) -> Summary:
    """Run one image of `input_size` through `model` (in eval mode) and record each stage's output."""
    shapes: dict[str, tuple[int, int, int]] = {}
    stages = [(name, m) for name, m in model.named_children() if name not in ("head", "aux")]

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            shapes[name] = (output.shape[2], output.shape[3], output.shape[1])

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in stages]
    try:
        macs = count_macs(model, input_size=input_size, in_chans=model.in_chans)
    finally:
        for h in handles:
            h.remove()
    rows = [StageRow(name, _kind(m), shapes[name], count_params(m)) for name, m in stages]
    classes = model.num_classes
    rows.append(StageRow("head", "ClassifierHead", (1, 1, classes), count_params(model.head)))
    if model.aux is not None:
        rows.append(StageRow("aux", "AuxHead (training only)", (1, 1, classes), count_params(model.aux)))
    return Summary(
        model_name=model.model_name,
        input_size=input_size,
        stages=rows,
        params=count_params(model),
        macs=macs,
        min_input_size=model.min_input_size,
    )


def format_summary(s: Summary) -> str:
    lines = [f"{s.model_name} at {s.input_size}x{s.input_size}", ""]
    lines.append(f"{'stage':<14}{'block':<28}{'output (HxWxC)':>18}{'parameters':>14}")
    for r in s.stages:
        shape = "x".join(str(v) for v in r.shape)
        lines.append(f"{r.name:<14}{r.kind:<28}{shape:>18}{r.params:>14,}")
    lines.append("")
    lines.append(f"parameters:        {s.params:,} ({s.params / 1e6:.2f}M)")
    lines.append(f"multiply-adds:     {s.macs:,} ({s.macs / 1e9:.2f} GMACs per image)")
    lines.append(f"minimum input:     {s.min_input_size}x{s.min_input_size}")
    return "\n".join(lines)
