"""What one benchmark run measures: the network, the step, the precision, the reference to compare with."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from inceptionnet.devices import dtype_named
from inceptionnet.models import list_models
from inceptionnet.perf.references import reference_name

MODES = ("infer", "train")


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
        dtype_named(self.dtype)
        dtype_named(self.reference_dtype or self.dtype)
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
