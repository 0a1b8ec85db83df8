"""Where this process sits among the processes torchrun started, for the commands that split work over them.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (and the rendezvous address) in each process's
environment; a plain command has none of them and is rank 0 of 1. `predict` and `eval` give rank r
the items i with i % world_size == r of their sorted list, and meet in a gloo process group (CPU
tensors, whatever device the networks run on) to wait for each other and to sum counts.

Any layer may import this module. Training keeps its own group set-up (training/distributed.py, with
restarts and NCCL); its Context is a Ranks with the device it trains on, and it shares the collectives
here (`all_sum`, `all_rows`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# A batch job's ranks wait for the slowest at the end: long enough for a share of hours of images.
# A rank that fails ends the others (torchrun stops the whole group), so no rank waits for a dead one.
WAIT = timedelta(hours=24)


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints results and writes shared files (a merged output; training's logs, checkpoints)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items: those at positions i with i % world_size == rank (every item on exactly one rank)."""
        return [x for i, x in enumerate(items) if i % self.world_size == self.rank]

    def device_of_rank(self, device: torch.device) -> torch.device:
        """`device` for this rank: under torchrun, CUDA without an index is the rank's own GPU (LOCAL_RANK)."""
        if device.type != "cuda" or device.index is not None or not self.distributed:
            return device
        return torch.device("cuda", self.local_rank)


def from_env() -> Ranks:
    """This process's place: torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world_size}; start the command with torchrun")
    return Ranks(rank=rank, world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(ranks: Ranks, *, timeout: timedelta = WAIT) -> Iterator[Ranks]:
    """The gloo group of torchrun's processes for the block (nothing in a single process), left at its end."""
    if not ranks.distributed or dist.is_initialized():
        yield ranks
        return
    dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world_size, timeout=timeout)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    """Wait until every rank is here (a no-op in a single process)."""
    if ranks.distributed:
        dist.barrier()


def all_sum(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The element-wise sum of `values` over all ranks, on its device (CPU tensors for gloo); the tensor itself
    in a single process."""
    if not ranks.distributed:
        return values
    values = values.detach().clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_rows(rows: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The rows of `rows` of every rank, rank 0's first (the tensor itself in a single process): the ranks may
    hold different numbers of rows (a share with unreadable images dropped)."""
    if not ranks.distributed:
        return rows
    counts = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(ranks.world_size)]
    dist.all_gather(counts, torch.tensor([len(rows)], device=rows.device))
    sizes = [int(c) for c in counts]
    padded = rows.new_zeros((max(sizes), *rows.shape[1:]))
    padded[: len(rows)] = rows
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return torch.cat([part[:size] for part, size in zip(gathered, sizes, strict=True)])
