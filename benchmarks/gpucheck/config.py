"""What the GPU check measures and within what budget; the tiny CPU setting of its self-test."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

# Seconds each kind of section is expected to take on an H100/H200, until one of its kind has run
# (then 1.2 times the longest of its kind so far is expected instead). "compile" is one network of one
# side (ours or timm's): torch.compile of a training step (forward and backward graphs, a few hundred
# Triton kernels), its first step, then its timed rounds.
ESTIMATES_S = {"ceiling": 10, "train": 60, "infer": 25, "loader": 30, "decode": 25, "compile": 90, "tensorrt": 150}
# A section is stopped after this many times the time it was expected to take (or at the budget's end,
# if sooner), so that one that hangs leaves the budget to the others.
DEADLINE_FACTOR = 3.0


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class CheckConfig:
    """One run of the GPU check. The defaults are the real check: about 7.5 minutes on one H100/H200."""

    out: str
    device: str = "cuda"
    models: tuple[str, ...] = ("inception_resnet_v2", "inception_v4")
    input_size: int = 299
    max_batch: int = 256  # training and inference: the largest that fits, halving from here
    iters: int = 10  # interleaved timed rounds
    warmup: int = 3
    compile: bool = True
    budget_s: float = 440.0  # from the check's start; imports and writing the report come on top
    images: str | None = None  # a folder of JPEGs to load instead of generated ones
    num_images: int = 256
    workers: int = field(default_factory=cores)
    loader_batch: int = 32
    loader_seconds: float = 10.0
    loader_batches: int = 5000  # counted batches at most (the time limit usually ends it first)
    decode_batch: int = 128
    decode_seconds: float = 5.0
    ceiling_n: int | None = None  # matrix size of the ceiling; None: measure.py's (8192 on CUDA)
    timm: bool = True  # compare with timm's networks (the check refuses to start where timm is missing)
    tiny: bool = False

    @classmethod
    def tiny_run(cls, out: str, **changes: object) -> CheckConfig:
        """Every code path but CUDA's, on the CPU in seconds: inception_v4 at 75 px, batch 2, one round, no compile."""
        tiny = cls(
            out=out,
            device="cpu",
            models=("inception_v4",),
            input_size=75,
            max_batch=2,
            iters=1,
            warmup=1,
            compile=False,
            budget_s=600.0,
            num_images=4,
            workers=1,
            loader_batch=2,
            loader_seconds=1.0,
            loader_batches=2,
            decode_batch=2,
            decode_seconds=0.5,
            ceiling_n=256,
            tiny=True,
        )
        return dataclasses.replace(tiny, **changes)  # type: ignore[arg-type]
