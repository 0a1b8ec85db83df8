"""What one benchmark run found: per-model timings and memory, the speed-up, the machine; as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


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
