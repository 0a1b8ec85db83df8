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
- multiply-adds per image are counted by torch's FLOP counter as in inceptionnet.summary, the
  achieved FLOP/s (2 per multiply-add, x3 for a training step) is compared with the speed of a large
  matrix multiply in the same dtype on the same device, timed in the same run.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from inceptionnet.factory import create_model
from inceptionnet.inference.fuse import fuse_for_inference
from inceptionnet.models import list_models
from inceptionnet.models.checkpointing import enable_checkpointing

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("infer", "train")

# Our name -> timm's name for the same network. Inception-ResNet-v1 and the paper's drawing of
# Inception-ResNet-v2 have no timm counterpart.
TIMM_NAMES = {
    "inception_v3": "inception_v3",
    "inception_v4": "inception_v4",
    "inception_resnet_v2": "inception_resnet_v2",
}


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run. `fused=None` means: fused for inference, unfused for training."""

    model: str
    batch_size: int = 16
    input_size: int = 299
    mode: str = "infer"
    dtype: str = "fp32"
    channels_last: bool = True
    fused: bool | None = None
    compile: bool = False
    checkpointing: bool = False
    reference: str | None = None
    reference_channels_last: bool = False
    reference_dtype: str | None = None  # None: the same dtype as ours
    iters: int = 10
    warmup: int = 2
    device: str = "cpu"
    width: float = 1.0
    num_classes: int = 1000
    seed: int = 0

    def resolved(self) -> BenchConfig:
        """Check the options and fill in the defaults that depend on others."""
        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(list_models())}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for d in (self.dtype, self.reference_dtype or self.dtype):
            if d not in DTYPES:
                raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {d!r}")
        if self.iters < 1 or self.warmup < 0 or self.batch_size < 1:
            raise ValueError("iters and batch_size must be >= 1 and warmup >= 0")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
        fused = (self.mode == "infer") if self.fused is None else self.fused
        if fused and self.mode == "train":
            raise ValueError("the fused network is inference-only; drop --fused for --mode train")
        if self.checkpointing and self.mode != "train":
            raise ValueError("activation checkpointing only matters for training; use it with --mode train")
        if self.reference is not None:
            reference_name(self.model, self.reference)
            if self.width != 1.0:
                raise ValueError("a reference comparison needs the full network; drop --width")
        return replace(self, fused=fused, reference_dtype=self.reference_dtype or self.dtype)


@dataclass(frozen=True)
class ModelResult:
    """Timing of one model: per-step seconds of every timed round and what follows from them."""

    label: str
    step_s: list[float]
    images_per_s: float  # batch / median step time
    peak_memory_mb: float | None
    memory_method: str
    macs_per_image: int
    achieved_tflops: float
    ceiling_share: float  # achieved / matrix-multiply ceiling


@dataclass(frozen=True)
class BenchResult:
    config: dict[str, Any]
    date: str
    device_name: str
    torch_version: str
    threads: int
    ceiling_tflops: float  # large torch.mm in the run's dtype, same device, same run
    ours: ModelResult
    reference: ModelResult | None = None
    # reference step time / our step time, per interleaved round: > 1 means ours is faster
    speedup: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def reference_name(model: str, reference: str = "timm") -> str:
    """The reference library's name for `model`; an error says which of ours have a counterpart."""
    if reference != "timm":
        raise ValueError(f"unknown reference {reference!r}; the only reference is 'timm'")
    if model not in TIMM_NAMES:
        raise ValueError(f"timm has no equivalent of {model}; compare one of: {', '.join(sorted(TIMM_NAMES))}")
    return TIMM_NAMES[model]


def build_reference(model: str, *, reference: str = "timm", num_classes: int = 1000) -> nn.Module:
    """timm's randomly initialised counterpart of `model` (timm is a dev dependency, imported here)."""
    name = reference_name(model, reference)
    try:
        import timm
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ValueError("the timm reference needs timm: pip install timm (or the project's dev extra)") from err
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def count_macs(model: nn.Module, *, input_size: int, in_chans: int = 3) -> int:
    """Multiply-adds of one image in eval mode, counted as inceptionnet.summary counts them (torch's FLOP counter).

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


def matmul_ceiling_tflops(*, device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """Best-of-`reps` speed of an n x n matrix multiply: the practical peak the networks are held against."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    with torch.inference_mode():
        torch.mm(a, b)
        for _ in range(reps):
            _sync(device)
            start = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(step: Callable[[], None], device: torch.device) -> tuple[float | None, str]:
    """Peak memory of one step: CUDA allocator peak, or the growth of the CPU process's peak RSS.

    On CPU, glibc keeps freed blocks for reuse, which hides a step's allocations from the RSS; the
    measurement therefore first makes large blocks go straight to and from the OS (mallopt) and
    returns cached memory (malloc_trim). Run it after the timed rounds: it slows later allocations.
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated (absolute)"
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: blocks >= 64 KiB are mmap'ed, freed at once
        libc.mallopt(-1, 0)  # M_TRIM_THRESHOLD: give freed heap tops back immediately
        libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
        before = _proc_status_kb("VmRSS")
        step()
        return (_proc_status_kb("VmHWM") - before) / 1024, "cpu peak RSS growth over one step"
    except (OSError, AttributeError):
        step()
        return None, "n/a (needs Linux glibc and /proc/self/clear_refs)"


def _proc_status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} missing from /proc/self/status")


def _make_step(
    model: nn.Module, cfg: BenchConfig, *, channels_last: bool, cast: bool, device: torch.device
) -> Callable[[], None]:
    """One timed step of `model`: inference of a batch, or a full training step with SGD."""
    dtype = DTYPES[cfg.dtype]
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


def _prepare_ours(cfg: BenchConfig, device: torch.device) -> tuple[nn.Module, bool, list[str]]:
    """Build our network in its benchmark setting; returns (model, weights cast to dtype, notes)."""
    notes = []
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, width=cfg.width, num_classes=cfg.num_classes)
    cast = False
    if cfg.fused:
        model = fuse_for_inference(model)
        if cfg.dtype != "fp32":
            # BN is folded away, so no statistics need fp32: cast the weights once instead of autocasting.
            cast = True
            notes.append(f"ours: fused network with {cfg.dtype} weights (no autocast)")
    if cfg.checkpointing:
        enable_checkpointing(model)
    model = model.to(device)
    if cast:
        model = model.to(DTYPES[cfg.dtype])
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        model = torch.compile(model)
        notes.append("ours: torch.compile (default mode); the reference runs eagerly")
    return model, cast, notes


def _timed(step: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - start


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "q1": q[0], "q3": q[2], "min": ordered[0], "max": ordered[-1]}


def run_benchmark(cfg: BenchConfig, *, log: Callable[[str], None] | None = None) -> BenchResult:
    """Measure our network (and, with `cfg.reference`, the reference) as `cfg` describes."""
    cfg = cfg.resolved()
    size = {"input_size": cfg.input_size}
    say = log or (lambda _msg: None)
    device = torch.device(cfg.device)
    dtype = DTYPES[cfg.dtype]
    flops_per_mac = 2 * (3 if cfg.mode == "train" else 1)  # backward costs about twice the forward

    say(f"matrix-multiply ceiling ({cfg.dtype}, {device.type}) ...")
    ceiling = matmul_ceiling_tflops(device=device, dtype=dtype)
    ceilings = {"ours": ceiling, "reference": ceiling}
    if cfg.reference is not None and cfg.reference_dtype != cfg.dtype:
        ceilings["reference"] = matmul_ceiling_tflops(device=device, dtype=DTYPES[cfg.reference_dtype])

    ours, cast, notes = _prepare_ours(cfg, device)
    with torch.device("meta"):  # shapes only: counting needs no weights and no arithmetic
        macs = count_macs(create_model(cfg.model, width=cfg.width, num_classes=cfg.num_classes), **size)
    steps = {"ours": _make_step(ours, cfg, channels_last=cfg.channels_last, cast=cast, device=device)}
    all_macs = {"ours": macs}
    if cfg.reference is not None:
        torch.manual_seed(cfg.seed)
        ref = build_reference(cfg.model, reference=cfg.reference, num_classes=cfg.num_classes)
        with torch.device("meta"):
            all_macs["reference"] = count_macs(build_reference(cfg.model, num_classes=cfg.num_classes), **size)
        ref = ref.to(device)
        if cfg.reference_channels_last:
            ref = ref.to(memory_format=torch.channels_last)
        ref_cfg = replace(cfg, dtype=cfg.reference_dtype)
        precision = cfg.reference_dtype + (" under autocast" if cfg.reference_dtype != "fp32" else "")
        notes.append(f"reference: {precision}, {'channels_last' if cfg.reference_channels_last else 'NCHW'}, eager")
        ref_layout = cfg.reference_channels_last
        steps["reference"] = _make_step(ref, ref_cfg, channels_last=ref_layout, cast=False, device=device)

    for label, step in steps.items():
        say(f"warm-up {label} ({cfg.warmup} steps) ...")
        for _ in range(cfg.warmup):
            step()
    times: dict[str, list[float]] = {label: [] for label in steps}
    for i in range(cfg.iters):
        for label, step in steps.items():  # alternating: ours, reference, ours, reference, ...
            times[label].append(_timed(step, device))
        say(f"round {i + 1}/{cfg.iters}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()))

    memory = {label: _peak_memory_mb(step, device) for label, step in steps.items()}

    # Timed again after the rounds, keeping the faster: on a loaded machine one timing can catch a busy moment.
    ceilings = {
        k: max(v, matmul_ceiling_tflops(device=device, dtype=DTYPES[d])) for k, v, d in _ceiling_rows(ceilings, cfg)
    }
    ceiling = ceilings["ours"]

    def result(label: str, name: str) -> ModelResult:
        ips = cfg.batch_size / statistics.median(times[label])
        achieved = all_macs[label] * flops_per_mac * ips / 1e12
        mem, method = memory[label]
        share = achieved / ceilings[label]  # against the matrix-multiply speed of the model's own dtype
        return ModelResult(name, times[label], ips, mem, method, all_macs[label], achieved, share)

    ours_label = "inceptionnet " + cfg.model + (" fused" if cfg.fused else "") + (" compiled" if cfg.compile else "")
    ref_result = speedup = None
    if cfg.reference is not None:
        ref_result = result("reference", f"{cfg.reference} {reference_name(cfg.model, cfg.reference)}")
        speedup = _quantiles([r / o for r, o in zip(times["reference"], times["ours"], strict=True)])
    return BenchResult(
        config=asdict(cfg),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        ceiling_tflops=ceiling,
        ours=result("ours", ours_label),
        reference=ref_result,
        speedup=speedup,
        notes=notes,
    )


def _ceiling_rows(ceilings: dict[str, float], cfg: BenchConfig) -> list[tuple[str, float, str]]:
    return [(k, v, cfg.dtype if k == "ours" else (cfg.reference_dtype or cfg.dtype)) for k, v in ceilings.items()]


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


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
