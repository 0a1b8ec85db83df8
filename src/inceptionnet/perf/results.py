"""What one benchmark run found: every contender's timed rounds, memory and share of the ceiling, the
speed-up of ours over each reference round by round, the machine; as JSON and as a short report."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelResult:
    """Timing of one contender: per-step seconds of every timed round and what follows from them."""

    key: str  # "ours", or the reference: "timm", "timm-channels-last", "onnxruntime", "openvino"
    label: str
    engine: str  # what ran it: "torch", "onnxruntime", "openvino"
    dtype: str
    step_s: list[float]
    images_per_s: float  # batch / median step time
    peak_memory_mb: float | None
    memory_method: str
    macs_per_image: int
    achieved_tflops: float
    ceiling_tflops: float  # large torch.mm in this contender's dtype, same device, same run
    ceiling_share: float  # achieved / ceiling


@dataclass(frozen=True)
class Speedup:
    """Ours against one reference: the reference's step time / ours, per interleaved round (> 1: ours is faster)."""

    reference: str
    per_round: list[float]
    median: float
    q1: float
    q3: float
    min: float
    max: float


@dataclass(frozen=True)
class BenchResult:
    config: dict[str, Any]
    date: str
    device_name: str
    torch_version: str
    threads: int
    versions: dict[str, str]  # the engines' and timm's versions where they ran
    ours: ModelResult
    references: list[ModelResult] = field(default_factory=list)
    speedups: list[Speedup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: str = ""  # what it ran on (measure.machine): the GPU, or the CPU with its features and cores

    def speedup(self, reference: str) -> Speedup:
        """The speed-up of ours over `reference` ("timm", "openvino", ...)."""
        for s in self.speedups:
            if s.reference == reference:
                return s
        raise KeyError(f"no reference {reference!r} in this run; it has: {[s.reference for s in self.speedups]}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def format_result(r: BenchResult) -> str:
    """A short human-readable report of one run: a row per contender, a line per reference's speed-up."""
    c = r.config
    lines = [
        f"{c['model']} {c['mode']} {c['dtype']} batch {c['batch_size']} at {c['input_size']}px on "
        f"{r.device_name} ({r.threads} threads), torch {r.torch_version}",
        f"{'model':<48}{'dtype':>6}{'img/s':>9}{'ms/step':>10}{'GMACs/img':>11}{'GFLOP/s':>10}{'ceiling':>9}"
        f"{'peak MB':>9}",
    ]
    for m in (r.ours, *r.references):
        mem = f"{m.peak_memory_mb:.0f}" if m.peak_memory_mb is not None else "n/a"
        lines.append(
            f"{m.label:<48}{m.dtype:>6}{m.images_per_s:>9.2f}{statistics.median(m.step_s) * 1e3:>10.1f}"
            f"{m.macs_per_image / 1e9:>11.2f}{m.achieved_tflops * 1e3:>10.1f}{m.ceiling_share:>9.1%}{mem:>9}"
        )
    ceilings = {m.dtype: m.ceiling_tflops for m in (r.ours, *r.references)}
    lines.append("matmul ceiling: " + ", ".join(f"{d} {t * 1e3:.1f} GFLOP/s" for d, t in ceilings.items()))
    lines.append(f"memory: {r.ours.memory_method}")
    for s in r.speedups:
        lines.append(
            f"speed-up over {s.reference} (its time / ours, {len(s.per_round)} interleaved rounds): "
            f"median {s.median:.2f}x, IQR {s.q1:.2f}-{s.q3:.2f}, range {s.min:.2f}-{s.max:.2f}"
        )
    lines.extend(f"note: {n}" for n in r.notes)
    return "\n".join(lines)
