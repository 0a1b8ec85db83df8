"""Process-group set-up for torchrun (PyTorch DDP), and the few collective operations training needs.

torchrun starts one process per GPU and sets RANK, LOCAL_RANK and WORLD_SIZE (and the rendezvous
address) in each one's environment; a plain `python -m inceptionnet train` has none of them and
runs as a single process with the same code path (world size 1, no collectives).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    """Where this process sits: its rank among world_size processes and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, writes logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> Context:
    """Join the process group torchrun prepared (if any) and pick this process's device.

    `device`: "auto" (the local rank's GPU when CUDA is available, else the CPU), "cuda" or "cpu".
    NCCL is used between GPUs, gloo between CPU processes.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device cuda was requested but CUDA is not available; use --device cpu")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cuda or cpu (torchrun picks the GPU per rank)")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The element-wise sum of `values` over all ranks (the tensor itself in a single process)."""
    if ctx.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def average_buffers(module: nn.Module, ctx: Context) -> None:
    """Replace every floating-point buffer (BatchNorm running mean and variance) by its mean over the ranks.

    Each rank's BatchNorm statistics follow its own batches; averaging them after every step keeps
    the networks, their weight averages, evaluation and checkpoints identical on all ranks (DDP's
    own buffer broadcast copies rank 0's statistics, discarding the others', and only before a forward).
    """
    if not ctx.distributed:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    for buffer, value in zip(buffers, flat.split([b.numel() for b in buffers]), strict=True):
        buffer.copy_(value.view_as(buffer))
