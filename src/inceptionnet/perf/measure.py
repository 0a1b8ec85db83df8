"""The one timer of the benchmark and the GPU check, and what they measure with it: the timed training
and inference steps, interleaved rounds, images/s and FLOP/s, quantiles, peak memory, the matmul
ceiling. (An evaluation reports the wall time of its own run instead, evaluation.scores.EvalResult.)

A training step is: zero the gradients, forward (under autocast for low precision), cross-entropy,
backward, an SGD update (momentum 0.9) on a batch already on the device. The paper's RMSpropTF is
left out on purpose: it loops over the parameters in Python, which would time the optimiser's kernel
launches rather than the networks.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet.cpu import cpu_features
from inceptionnet.devices import sync

Step = Callable[[], None]
CPU_CEILING_N = 2048  # the largest CPU matrix of the ceiling: large enough to reach the cores' peak
CEILING_STEP_S = 0.25  # the longest one product of the CPU ceiling may take


def timed(step: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of `step`, with the device's queued work finished before and after."""
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, autocast: torch.dtype | None) -> Step:
    """One training step of `model` on (x, y), with its own SGD optimiser; autocast to `autocast` if given."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(x.device, autocast):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def infer_step(model: nn.Module, x: torch.Tensor, *, autocast: torch.dtype | None) -> Step:
    """One forward pass of `model` on x under inference_mode; autocast to `autocast` if given."""
    model.eval()

    def step() -> None:
        with torch.inference_mode(), _autocast(x.device, autocast):
            model(x)

    return step


def interleaved(
    steps: dict[str, Step],
    *,
    rounds: int,
    warmup: int,
    device: torch.device,
    idle_s: float = 0.0,
    on_round: Callable[[int, dict[str, list[float]]], None] | None = None,
) -> dict[str, list[float]]:
    """Warm each step up, then time one call of each in turn (ours, a reference, ours, ...), `rounds` times.

    `idle_s` seconds pass before each timed call (not timed): the worker threads of the step before go
    to sleep instead of competing with the one timed. `on_round(i, times)` is told after each round.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync(device)
    times: dict[str, list[float]] = {key: [] for key in steps}
    for i in range(rounds):
        for key, step in steps.items():
            if idle_s:
                time.sleep(idle_s)
            times[key].append(timed(step, device))
        if on_round is not None:
            on_round(i, times)
    return times


def quantiles(values: list[float]) -> dict[str, float]:
    """Median, quartiles and range of `values` (a single value is all five)."""
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "q1": q[0], "q3": q[2], "min": ordered[0], "max": ordered[-1]}


def rates(step_s: list[float], *, batch: int, macs_per_image: int, training: bool) -> tuple[float, float]:
    """Images/s (batch / the median step) and the TFLOP/s they achieve: 2 FLOPs per multiply-add, and a
    training step costs about 3 forward passes (the backward about twice the forward)."""
    images_per_s = batch / statistics.median(step_s)
    return images_per_s, macs_per_image * 2 * (3 if training else 1) * images_per_s / 1e12


def ceiling_size(device: torch.device, dtype: torch.dtype) -> int:
    """The matrix size of the ceiling: 8192 on a GPU; on a CPU the largest power of two up to CPU_CEILING_N whose
    product takes at most CEILING_STEP_S, so that an emulated dtype (bf16 without AVX512-BF16: about 100x
    slower than fp32) is measured in about a second, not minutes."""
    if device.type != "cpu":
        return 8192
    n = 256
    while n < CPU_CEILING_N:
        a = torch.randn(n, n).to(dtype)
        with torch.inference_mode():
            torch.mm(a, a)
            seconds = timed(lambda a=a: torch.mm(a, a), device)
        if 8 * seconds > CEILING_STEP_S:  # the next size costs about 8x as much
            break
        n *= 2
    return n


def matmul_ceiling_tflops(*, device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """Best-of-`reps` speed of an n x n matrix multiply (default `ceiling_size`): the practical peak the
    networks are held against."""
    n = n or ceiling_size(device, dtype)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    with torch.inference_mode():
        torch.mm(a, b)
        for _ in range(reps):
            best = min(best, timed(lambda: torch.mm(a, b), device))
    return 2 * n**3 / best / 1e12


def peak_memory_mb(step: Callable[[], None], device: torch.device) -> tuple[float | None, str]:
    """Peak memory of one step and how it was measured: CUDA allocator peak, or the growth of the CPU
    process's peak RSS (None where neither is available).

    On CPU, glibc keeps freed blocks for reuse, which hides a step's allocations from the RSS; the
    measurement therefore first makes large blocks go straight to and from the OS (mallopt) and
    returns cached memory (malloc_trim). Run it after the timed rounds: it slows later allocations.
    """
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
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


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name where Linux tells it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> str:
    """What a measurement ran on, as results record it: the GPU's name, or the CPU with its features and cores."""
    if device.type == "cuda":
        return device_name(device)
    return f"{cpu_features().describe()}, {os.cpu_count()} logical cores"
