"""The built-in demo data, and seeded, resumable training and validation loaders over any data source
(`data.sources`; paper-spec section 9)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from inceptionnet.data.balanced import BalancedSampler
from inceptionnet.data.images import collate_skipping_bad
from inceptionnet.data.seeds import derive_seed, sample_seed
from inceptionnet.data.sources.shards import ShardSource

# CIFAR-10 subset shipped with the package (assets/demo/README.md)
DEMO_DATA = Path(__file__).resolve().parent.parent / "assets" / "demo"


class SeededSamples(Dataset):
    """A dataset whose random augmentation of sample i in epoch e depends only on (seed, e, i).

    The transform's random draws come from torch's global generator; each item runs under a forked
    generator seeded by `sample_seed`, so the caller's random state is untouched and a resumed run
    sees exactly the augmentations an uninterrupted run would, whatever the number of workers.
    Call `set_epoch` before creating each epoch's iterator (workers are started per epoch).
    """

    def __init__(self, dataset: Dataset, *, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, index))
            return self.dataset[index]


class ResumableSampler(DistributedSampler):
    """DistributedSampler (this rank's share of a seeded per-epoch permutation) that can start mid-epoch.

    `set_epoch(epoch, start=k)` skips the first k indices of this rank's share: the samples an
    interrupted run had already trained on.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


_SHARD_ORDER = 0x5348  # keeps the shard sampler's seeds apart from the augmentation seeds (seed, epoch, index)


def _permutation(n: int, *keys: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(*keys))).tolist()


def shard_orders(shards: Sequence[Sequence[int]], *, seed: int, epoch: int, world_size: int) -> list[list[int]]:
    """Every rank's sample order for one epoch of a sharded split: a pure function of its arguments.

    The shards are permuted with (seed, epoch); rank r takes the shards r, r + world_size, ... and
    reads them one after the other, each shard's samples shuffled with (seed, epoch, shard number).
    Ranks are then balanced to ceil(N / world_size) samples each: a rank over that count hands the
    samples at the end of its order to the ranks under it (in rank order), so every sample is read
    once per epoch by the whole group; where N is not a multiple of world_size, the fewer than
    world_size places still empty repeat the first samples of the epoch (as DistributedSampler pads).
    """
    ranks: list[list[int]] = [[] for _ in range(world_size)]
    for position, shard in enumerate(_permutation(len(shards), seed, epoch, _SHARD_ORDER)):
        members = shards[shard]
        order = _permutation(len(members), seed, epoch, _SHARD_ORDER, shard)
        ranks[position % world_size].extend(members[i] for i in order)
    quota = math.ceil(sum(len(s) for s in shards) / world_size)
    surplus = [i for order in ranks for i in order[quota:]]
    repeats = itertools.cycle([i for order in ranks for i in order])
    balanced = []
    for order in ranks:
        kept = order[:quota]
        need = quota - len(kept)
        kept += surplus[:need]
        surplus = surplus[need:]
        balanced.append(kept + list(itertools.islice(repeats, quota - len(kept))))
    return balanced


class ShardSampler(Sampler[int]):
    """This rank's samples of a sharded split (`shard_orders`): its own shards, read one after the other.

    Same interface as ResumableSampler: `num_samples` per rank, and `set_epoch(epoch, start=k)` skips
    the first k samples of this rank's order (those an interrupted run had trained on).
    """

    def __init__(self, shards: Sequence[Sequence[int]], *, num_replicas: int, rank: int, seed: int) -> None:
        self.shards = [list(s) for s in shards]
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.num_samples = math.ceil(sum(len(s) for s in self.shards) / num_replicas)
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        orders = shard_orders(self.shards, seed=self.seed, epoch=self.epoch, world_size=self.num_replicas)
        return iter(orders[self.rank][self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch per worker from its generator; seed numpy and random the same way.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


TrainSampler = ResumableSampler | ShardSampler | BalancedSampler


def train_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    balanced: bool = False,
) -> tuple[DataLoader, TrainSampler, SeededSamples]:
    """Shuffled, seeded training batches of this rank (full batches only), pinned when CUDA is present.

    A split of tar shards is read shard by shard, each rank its own shards (`ShardSampler`); any other
    source through a seeded permutation of all its samples (`ResumableSampler`), or with `balanced`
    through class-balanced draws (`BalancedSampler`, from the source's `targets`). Returns the loader and
    the two objects to call `set_epoch` on before each epoch.
    """
    samples = SeededSamples(dataset, seed=seed)
    shard = {"num_replicas": world_size, "rank": rank, "seed": seed}
    sampler: TrainSampler
    if isinstance(dataset, ShardSource):
        if balanced:
            raise ValueError(
                "--sampler balanced draws images at random, which tar shards (read one after the other) do not "
                "allow; train on the shards with --sampler shuffle (and --class-weights balanced), or on an image "
                "folder"
            )
        sampler = ShardSampler(dataset.shard_groups(), **shard)
    elif balanced:
        sampler = BalancedSampler(dataset.targets, **shard)  # type: ignore[attr-defined]
    else:
        sampler = ResumableSampler(samples, **shard)
    if sampler.num_samples < batch_size:
        raise ValueError(
            f"{len(samples)} training images give {sampler.num_samples} per process, fewer than one batch of "
            f"{batch_size}; lower the batch size or add images"
        )
    loader = DataLoader(
        samples,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skipping_bad,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler, samples


def val_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """This rank's share of the validation set (every world_size-th image, none repeated), in order."""
    shard = Subset(dataset, range(rank, len(dataset), world_size))  # type: ignore[arg-type]
    return DataLoader(
        shard,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_skipping_bad,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(0),
    )
