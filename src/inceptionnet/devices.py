"""Devices and number formats: the dtype names of the command line, picking a device, waiting for it.

Any layer may import this module.
"""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def dtype_named(name: str) -> torch.dtype:
    """The torch dtype of "fp32", "bf16" or "fp16", or a ValueError naming the choices."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {name!r}")
    return DTYPES[name]


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as a torch.device; None means CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a timer measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
