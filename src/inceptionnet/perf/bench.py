"""Throughput and memory of a network, side by side with references (timm on PyTorch and on the engines).

Method (docs/performance.md explains the choices):
- all contenders (perf.contenders: ours on its engine, then each reference) are built in the same
  process on the same device and warmed up, then timed one step at a time in turn (ours, each
  reference, ours, ...), so background load and clock changes hit all alike; the speed-up over
  each reference is computed per round and reported as median, quartiles and range over the rounds;
- before each timed step the process idles briefly, so that the threads of the contender that ran
  before (OpenMP, ONNX Runtime and OpenVINO worker threads spin for a while after their work) do not
  compete with the one being timed;
- a step is one forward pass of a batch (`infer`) or forward + cross-entropy + backward + SGD
  update (`train`);
- peak memory is measured in one extra step per contender: torch.cuda.max_memory_allocated on CUDA;
  on CPU the growth of the process's peak resident set over the step, or None where unavailable;
- multiply-adds per image are counted by torch's FLOP counter (models.summary.count_macs); the
  achieved FLOP/s (2 per multiply-add, x3 for a training step) is compared with the speed of a large
  matrix multiply in the contender's dtype on the same device, timed in the same run.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from inceptionnet.devices import dtype_named
from inceptionnet.perf.config import BenchConfig
from inceptionnet.perf.contenders import Contender, build_contenders
from inceptionnet.perf.measure import (
    ceiling_size,
    device_name,
    interleaved,
    machine,
    matmul_ceiling_tflops,
    peak_memory_mb,
    quantiles,
    rates,
)
from inceptionnet.perf.results import BenchResult, ModelResult, Speedup, format_result

__all__ = ["BenchConfig", "format_result", "run_benchmark"]

IDLE_BEFORE_STEP_S = 0.02  # long enough for spinning worker threads to go to sleep; not timed


def _interleaved_times(
    contenders: list[Contender], cfg: BenchConfig, device: torch.device, say: Callable[[str], None]
) -> dict[str, list[float]]:
    """Warm every contender up, then time one step of each in turn, `cfg.iters` rounds."""
    say(f"warm-up: {cfg.warmup} steps of each of {', '.join(c.label for c in contenders)} ...")

    def report(i: int, times: dict[str, list[float]]) -> None:
        say(f"round {i + 1}/{cfg.iters}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()))

    steps = {c.key: c.step for c in contenders}
    return interleaved(
        steps, rounds=cfg.iters, warmup=cfg.warmup, device=device, idle_s=IDLE_BEFORE_STEP_S, on_round=report
    )


def _versions(contenders: list[Contender]) -> dict[str, str]:
    """The versions of what ran besides torch: timm, onnxruntime, openvino."""
    packages = {"timm"} if len(contenders) > 1 else set()
    packages |= {c.engine for c in contenders if c.engine != "torch"}
    return {p: importlib.metadata.version(p) for p in sorted(packages)}


def run_benchmark(cfg: BenchConfig, *, log: Callable[[str], None] | None = None) -> BenchResult:
    """Measure our network on its engine and, with `cfg.references`, each reference, as `cfg` describes."""
    cfg = cfg.resolved()
    say = log or (lambda _msg: None)
    device = torch.device(cfg.device)

    dtypes = list(dict.fromkeys([cfg.dtype, cfg.reference_dtype or cfg.dtype]))
    sizes = {d: ceiling_size(device, dtype_named(d)) for d in dtypes}
    say(f"matrix-multiply ceiling ({', '.join(f'{d}: {n}x{n}' for d, n in sizes.items())}, {device.type}) ...")
    before = {d: matmul_ceiling_tflops(device=device, dtype=dtype_named(d), n=sizes[d]) for d in dtypes}

    with tempfile.TemporaryDirectory(prefix="inceptionnet-bench-") as workdir:
        contenders = build_contenders(cfg, device, Path(workdir), say)
        times = _interleaved_times(contenders, cfg, device, say)
        memory = {c.key: peak_memory_mb(c.step, device) for c in contenders}
    # Timed again after the rounds, keeping the faster: on a loaded machine one timing can catch a busy moment.
    ceilings = {
        d: max(t, matmul_ceiling_tflops(device=device, dtype=dtype_named(d), n=sizes[d])) for d, t in before.items()
    }

    def result(c: Contender) -> ModelResult:
        ips, achieved = rates(times[c.key], batch=cfg.batch_size, macs_per_image=c.macs, training=cfg.mode == "train")
        # the matrix-multiply speed of the contender's own dtype; int8 (no such torch.mm) against fp32's
        ceiling = ceilings.get(c.dtype, ceilings[cfg.dtype])
        mem, method = memory[c.key]
        return ModelResult(
            key=c.key,
            label=c.label,
            engine=c.engine,
            dtype=c.dtype,
            step_s=times[c.key],
            images_per_s=ips,
            peak_memory_mb=mem,
            memory_method=method,
            macs_per_image=c.macs,
            achieved_tflops=achieved,
            ceiling_tflops=ceiling,
            ceiling_share=achieved / ceiling,
        )

    speedups = []
    for c in contenders[1:]:
        per_round = [r / o for r, o in zip(times[c.key], times["ours"], strict=True)]
        speedups.append(Speedup(c.key, per_round, **quantiles(per_round)))
    return BenchResult(
        config=asdict(cfg),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device_name=device_name(device),
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        versions=_versions(contenders),
        ours=result(contenders[0]),
        references=[result(c) for c in contenders[1:]],
        speedups=speedups,
        notes=[n for c in contenders for n in c.notes],
        machine=machine(device),
    )
