"""What the GPU check adds to the benchmark's steps (perf.measure): random batches on the device, the
largest batch that fits (out-of-memory errors told apart from the others), TensorRT."""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch
from torch import nn


def free_memory(device: torch.device) -> None:
    """Give the CUDA memory of dropped tensors back: Python's garbage first, then the allocator's cache
    (on the CPU, freed tensors are returned as their references go)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def random_batch(
    batch: int, input_size: int, *, device: torch.device, num_classes: int = 1000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images (channels_last, fp32, as the loader delivers them) and labels, drawn on `device`."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(batch, 3, input_size, input_size, generator=gen, device=device)
    y = torch.randint(0, num_classes, (batch,), generator=gen, device=device)
    return x.contiguous(memory_format=torch.channels_last), y


# How cuBLAS and cuDNN report an allocation that failed: a plain RuntimeError, not torch.OutOfMemoryError.
OUT_OF_MEMORY_MESSAGES = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE")


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` says the device ran out of memory, from the allocator or from cuBLAS / cuDNN."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in OUT_OF_MEMORY_MESSAGES)


def largest_batch(fits: Callable[[int], None], *, start: int, device: torch.device) -> tuple[int, list[int]]:
    """The largest batch from `start` down, halving, for which `fits(batch)` runs out of no memory.

    `fits` runs the steps at that batch once; the memory of a failed try is freed before the next.
    Any other error is raised as it is.
    Returns the batch and every size tried.
    """
    batch, tried = start, []
    while batch >= 1:
        tried.append(batch)
        try:
            fits(batch)
            return batch, tried
        except RuntimeError as err:  # torch.OutOfMemoryError is one
            if not out_of_memory(err):
                raise
        free_memory(device)  # out of the except block: the traceback's tensors can be freed now
        batch //= 2
    raise RuntimeError(f"not even a batch of 1 fits in the memory of {device}; tried batches {tried}")


def describe_error(err: BaseException, limit: int = 400) -> str:
    """`Type: message`, its first line cut to `limit` characters: what a report can hold."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tensorrt_version() -> tuple[str | None, str]:
    """torch-tensorrt's version, or None and why it cannot be used (nothing is installed here)."""
    try:
        import torch_tensorrt
    except ImportError:
        return None, "torch-tensorrt is not installed"
    except Exception as err:  # a broken install (missing TensorRT libraries) fails at import
        return None, f"torch-tensorrt failed to import: {describe_error(err)}"
    return str(getattr(torch_tensorrt, "__version__", "unknown")), "installed"


def tensorrt_module(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """`model` (fp32, eval) compiled by torch-tensorrt for input x, fp16 kernels allowed."""
    import torch_tensorrt

    return torch_tensorrt.compile(model.eval(), ir="dynamo", inputs=[x], enabled_precisions={torch.float16})
