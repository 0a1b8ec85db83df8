"""Process-group set-up for torchrun (PyTorch DDP), and the few collective operations training needs.

torchrun starts one process per GPU and sets RANK, LOCAL_RANK and WORLD_SIZE (and the rendezvous
address) in each one's environment; a plain `python -m inceptionnet train` has none of them and
runs as a single process with the same code path (world size 1, no collectives).

Restarts (`torchrun --max-restarts N`): torchrun's agent hosts one key-value store for its whole
life, and the process group of a failed attempt leaves its keys there (each rank's address, the
barrier counters). A restarted group that read them would connect to dead peers or wait forever,
so each attempt's group keeps its keys under its own prefix, the restart count. Forming the group,
and every collective after it, gives up after `GROUP_TIMEOUT` instead of hanging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from inceptionnet.ranks import Ranks

# the collectives, shared with predict and eval (re-exported: training calls them distributed.all_sum, ...)
from inceptionnet.ranks import all_rows as all_rows
from inceptionnet.ranks import all_sum as all_sum

# How long forming the group, or a collective, may wait for the other ranks before failing. Long
# enough for rank 0 to write a large checkpoint while the others wait at the next collective.
GROUP_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class Context(Ranks):
    """Where this process sits (Ranks: its rank among world_size processes; rank 0 alone prints, writes logs
    and writes checkpoints) and the device it trains on."""

    device: torch.device


def setup(device: str = "auto", *, timeout: timedelta = GROUP_TIMEOUT) -> Context:
    """Join the process group torchrun prepared (if any) and pick this process's device.

    `device`: "auto" (the local rank's GPU when CUDA is available, else the CPU), "cuda" or "cpu".
    NCCL is used between GPUs, gloo between CPU processes (and for CPU tensors). `timeout`: how long the group may take
    to form, and a collective to complete, before this process fails.
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
        _join_group(rank=rank, world_size=world_size, device=dev, timeout=timeout)
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def _join_group(*, rank: int, world_size: int, device: torch.device, timeout: timedelta) -> None:
    """init_process_group on a store of this attempt's own, failing with a clear error after `timeout`."""
    store = _attempt_store(world_size, timeout) if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" else None
    # On GPUs the tensors go through NCCL, and the few scalars kept on the CPU (skipped batches,
    # skipped images, the checkpoint agreement) through gloo: NCCL alone refuses CPU tensors.
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(
            backend,
            store=store,
            rank=rank,
            world_size=world_size,
            timeout=timeout,
            device_id=device if device.type == "cuda" else None,
        )
    except dist.DistError as err:
        raise RuntimeError(
            f"rank {rank} could not form the process group of {world_size} processes within {timeout} "
            f"({str(err).rstrip('. ')}); check that every machine started torchrun with the same --nnodes and "
            "rendezvous endpoint, and that the machines reach each other on the network"
        ) from err


def _attempt_store(world_size: int, timeout: timedelta) -> dist.Store:
    """The store torchrun's agent hosts, under a prefix of this attempt (its restart count).

    The count is the same on every process of an attempt when one agent runs them all (one machine).
    Agents on several machines count restarts each on its own (a membership change restarts a
    group without counting), so a restartable group across machines must not share the agent's
    store: torchrun's `--rdzv-backend c10d` with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 gives each
    attempt a fresh one (and then this function is not called).
    """
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
    if nodes > 1 and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0:
        raise ValueError(
            f"torchrun --max-restarts on {nodes} machines would restart the group on a store that still holds "
            "the failed attempt's keys; run torchrun with --rdzv-backend c10d and the environment variable "
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (docs/training.md, 'Restarts and pre-emption'), or --max-restarts 0"
        )
    agent = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False, timeout=timeout
    )
    return dist.PrefixStore(f"inceptionnet/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", agent)


def cleanup(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, ctx: Context) -> bool:
    """Whether `flag` is true on at least one rank (so that all ranks take the same branch)."""
    return bool(all_sum(torch.tensor([float(flag)]), ctx).item())


def same_on_all_ranks(value: int, ctx: Context) -> bool:
    """Whether every rank holds the same `value`."""
    if not ctx.distributed:
        return True
    bounds = torch.tensor([value, -value], dtype=torch.float64)
    dist.all_reduce(bounds, op=dist.ReduceOp.MAX)  # the largest value, and minus the smallest
    return bool(bounds[0] == -bounds[1])


def changing_buffers(module: nn.Module) -> list[torch.Tensor]:
    """The floating-point buffers a training step can change: those of modules in training mode.

    A frozen stage's BatchNorm stays in eval mode (fine-tuning): its statistics are the loaded ones on
    every rank and are left out, so no averaging can move them by a rounding error.
    """
    return [b for m in module.modules() if m.training for b in m.buffers(recurse=False) if b.is_floating_point()]


def average_buffers(module: nn.Module, ctx: Context) -> None:
    """Replace every floating-point buffer (BatchNorm running mean and variance) by its mean over the ranks.

    Each rank's BatchNorm statistics follow its own batches; averaging them after every step keeps
    the networks, their weight averages, evaluation and checkpoints identical on all ranks (DDP's
    own buffer broadcast copies rank 0's statistics, discarding the others', and only before a forward).
    """
    if not ctx.distributed:
        return
    buffers = changing_buffers(module)
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    for buffer, value in zip(buffers, flat.split([b.numel() for b in buffers]), strict=True):
        buffer.copy_(value.view_as(buffer))
