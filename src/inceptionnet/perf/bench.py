"""Throughput and memory of a network, side by side with a reference implementation (timm).

Method (docs/performance.md explains the choices):
- both models are built in the same process on the same device, warmed up, then timed one step at
  a time in alternation (ours, reference, ours, reference, ...), so background load and clock
  changes hit both alike; the speed-up is computed per round and reported as median, quartiles and
  range over the rounds;
- a step is one forward pass of a batch (`infer`, under inference_mode) or forward + cross-entropy
  + backward + SGD update (`train`);
- peak memory is measured in one extra step per model: torch.cuda.max_memory_allocated on CUDA;
  on CPU the growth of the process's peak resident set over the step (Linux /proc/self/clear_refs
  resets the peak), or None where that is unavailable;
- multiply-adds per image are counted by torch's FLOP counter (models.summary.count_macs), the
  achieved FLOP/s (2 per multiply-add, x3 for a training step) is compared with the speed of a large
  matrix multiply in the same dtype on the same device, timed in the same run.
"""

from __future__ import annotations

import contextlib
import datetime
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet.devices import dtype_named
from inceptionnet.factory import create_model
from inceptionnet.inference.fuse import fuse_for_inference
from inceptionnet.models.summary import count_macs
from inceptionnet.perf.config import BenchConfig
from inceptionnet.perf.measure import device_name, matmul_ceiling_tflops, peak_memory_mb, quantiles, timed
from inceptionnet.perf.references import build_reference, reference_name
from inceptionnet.perf.results import BenchResult, ModelResult


@dataclass(frozen=True)
class _Contender:
    """One network of the run: its label in the report, its timed step, its work per image, its notes."""

    label: str
    step: Callable[[], None]
    macs: int
    dtype: str
    notes: tuple[str, ...]


def _make_step(
    model: nn.Module, cfg: BenchConfig, *, channels_last: bool, cast: bool, device: torch.device
) -> Callable[[], None]:
    """One timed step of `model`: inference of a batch, or a full training step with SGD."""
    dtype = dtype_named(cfg.dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.batch_size, 3, cfg.input_size, cfg.input_size, generator=gen).to(device)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if cast:
        x = x.to(dtype)
    low_precision = dtype != torch.float32 and not cast
    autocast = torch.autocast(device.type, dtype=dtype) if low_precision else contextlib.nullcontext()

    if cfg.mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.inference_mode(), autocast:
                model(x)

        return infer

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return train


def _ours(cfg: BenchConfig, device: torch.device) -> _Contender:
    """Our network in its benchmark setting (fused, cast, channels_last, compiled as `cfg` says)."""
    notes = []
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, width=cfg.width, num_classes=cfg.num_classes)
    # BN is folded away in the fused network, so no statistics need fp32: cast the weights once
    # instead of autocasting every op.
    cast = bool(cfg.fused) and cfg.dtype != "fp32"
    if cfg.fused:
        model = fuse_for_inference(model)
    if cast:
        notes.append(f"ours: fused network with {cfg.dtype} weights (no autocast)")
    if cfg.checkpointing:
        model.set_grad_checkpointing(True)
    model = model.to(device)
    if cast:
        model = model.to(dtype_named(cfg.dtype))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        model = torch.compile(model)
        notes.append("ours: torch.compile (default mode); the reference runs eagerly")
    with torch.device("meta"):  # shapes only: counting needs no weights and no arithmetic
        shapes = create_model(cfg.model, width=cfg.width, num_classes=cfg.num_classes)
        macs = count_macs(shapes, input_size=cfg.input_size)
    label = "inceptionnet " + cfg.model + (" fused" if cfg.fused else "") + (" compiled" if cfg.compile else "")
    step = _make_step(model, cfg, channels_last=cfg.channels_last, cast=cast, device=device)
    return _Contender(label, step, macs, cfg.dtype, tuple(notes))


def _reference(cfg: BenchConfig, reference: str, device: torch.device) -> _Contender:
    """The reference's network, eager, under autocast for low precision, in its own layout."""
    dtype = cfg.reference_dtype or cfg.dtype
    torch.manual_seed(cfg.seed)
    model = build_reference(cfg.model, reference=reference, num_classes=cfg.num_classes)
    with torch.device("meta"):
        shapes = build_reference(cfg.model, reference=reference, num_classes=cfg.num_classes)
        macs = count_macs(shapes, input_size=cfg.input_size)
    model = model.to(device)
    if cfg.reference_channels_last:
        model = model.to(memory_format=torch.channels_last)
    precision = dtype + (" under autocast" if dtype != "fp32" else "")
    note = f"reference: {precision}, {'channels_last' if cfg.reference_channels_last else 'NCHW'}, eager"
    ref_cfg = replace(cfg, dtype=dtype)
    step = _make_step(model, ref_cfg, channels_last=cfg.reference_channels_last, cast=False, device=device)
    return _Contender(f"{reference} {reference_name(cfg.model, reference)}", step, macs, dtype, (note,))


def _interleaved_times(
    contenders: dict[str, _Contender], cfg: BenchConfig, device: torch.device, say: Callable[[str], None]
) -> dict[str, list[float]]:
    """Warm every contender up, then time one step of each in turn, `cfg.iters` rounds."""
    for label, c in contenders.items():
        say(f"warm-up {label} ({cfg.warmup} steps) ...")
        for _ in range(cfg.warmup):
            c.step()
    times: dict[str, list[float]] = {label: [] for label in contenders}
    for i in range(cfg.iters):
        for label, c in contenders.items():  # alternating: ours, reference, ours, reference, ...
            times[label].append(timed(c.step, device))
        say(f"round {i + 1}/{cfg.iters}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()))
    return times


def run_benchmark(cfg: BenchConfig, *, log: Callable[[str], None] | None = None) -> BenchResult:
    """Measure our network (and, with `cfg.reference`, the reference) as `cfg` describes."""
    cfg = cfg.resolved()
    say = log or (lambda _msg: None)
    device = torch.device(cfg.device)
    flops_per_mac = 2 * (3 if cfg.mode == "train" else 1)  # backward costs about twice the forward

    say(f"matrix-multiply ceiling ({cfg.dtype}, {device.type}) ...")
    dtypes = dict.fromkeys([cfg.dtype, cfg.reference_dtype or cfg.dtype] if cfg.reference else [cfg.dtype])
    before = {d: matmul_ceiling_tflops(device=device, dtype=dtype_named(d)) for d in dtypes}

    contenders = {"ours": _ours(cfg, device)}
    if cfg.reference is not None:
        contenders["reference"] = _reference(cfg, cfg.reference, device)
    times = _interleaved_times(contenders, cfg, device, say)
    memory = {label: peak_memory_mb(c.step, device) for label, c in contenders.items()}
    # Timed again after the rounds, keeping the faster: on a loaded machine one timing can catch a busy moment.
    ceilings = {
        label: max(before[c.dtype], matmul_ceiling_tflops(device=device, dtype=dtype_named(c.dtype)))
        for label, c in contenders.items()
    }

    def result(label: str) -> ModelResult:
        c = contenders[label]
        ips = cfg.batch_size / statistics.median(times[label])
        achieved = c.macs * flops_per_mac * ips / 1e12
        share = achieved / ceilings[label]  # against the matrix-multiply speed of the model's own dtype
        return ModelResult(c.label, times[label], ips, *memory[label], c.macs, achieved, share)

    speedup = None
    if cfg.reference is not None:
        speedup = quantiles([r / o for r, o in zip(times["reference"], times["ours"], strict=True)])
    return BenchResult(
        config=asdict(cfg),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device_name=device_name(device),
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        ceiling_tflops=ceilings["ours"],
        ours=result("ours"),
        reference=result("reference") if cfg.reference is not None else None,
        speedup=speedup,
        notes=[n for c in contenders.values() for n in c.notes],
    )


def format_result(r: BenchResult) -> str:
    """A short human-readable report of one run."""
    c = r.config
    lines = [
        f"{c['model']} {c['mode']} {c['dtype']} batch {c['batch_size']} at {c['input_size']}px on "
        f"{r.device_name} ({r.threads} threads), torch {r.torch_version}",
        f"matmul ceiling: {r.ceiling_tflops * 1e3:.1f} GFLOP/s ({c['dtype']})",
        f"{'model':<40}{'img/s':>10}{'ms/step':>10}{'GMACs/img':>11}{'GFLOP/s':>10}{'ceiling':>9}{'peak MB':>10}",
    ]
    for m in (r.ours, r.reference):
        if m is None:
            continue
        mem = f"{m.peak_memory_mb:.0f}" if m.peak_memory_mb is not None else "n/a"
        lines.append(
            f"{m.label:<40}{m.images_per_s:>10.2f}{statistics.median(m.step_s) * 1e3:>10.1f}"
            f"{m.macs_per_image / 1e9:>11.2f}{m.achieved_tflops * 1e3:>10.1f}{m.ceiling_share:>9.1%}{mem:>10}"
        )
    lines.append(f"memory: {r.ours.memory_method}")
    if r.speedup is not None:
        s = r.speedup
        lines.append(
            f"speed-up (reference time / ours, {len(r.ours.step_s)} interleaved rounds): median {s['median']:.2f}x, "
            f"IQR {s['q1']:.2f}-{s['q3']:.2f}, range {s['min']:.2f}-{s['max']:.2f}"
        )
    lines.extend(f"note: {n}" for n in r.notes)
    return "\n".join(lines)
