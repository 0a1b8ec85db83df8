"""Measurement primitives of the benchmark: one timed step, quantiles, peak memory, the matmul ceiling."""

from __future__ import annotations

import contextlib
import ctypes
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from inceptionnet.devices import sync


def timed(step: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of `step`, with the device's queued work finished before and after."""
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def quantiles(values: list[float]) -> dict[str, float]:
    """Median, quartiles and range of `values` (a single value is all five)."""
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "q1": q[0], "q3": q[2], "min": ordered[0], "max": ordered[-1]}


def matmul_ceiling_tflops(*, device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """Best-of-`reps` speed of an n x n matrix multiply: the practical peak the networks are held against."""
    n = n or (8192 if device.type == "cuda" else 2048)
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
