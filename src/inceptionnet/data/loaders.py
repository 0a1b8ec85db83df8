"""The built-in demo data, and seeded, resumable training and validation loaders over any data source
(`data.sources`; paper-spec section 9)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from inceptionnet.data.images import collate_skipping_bad

# CIFAR-10 subset shipped with the package (assets/demo/README.md)
DEMO_DATA = Path(__file__).resolve().parent.parent / "assets" / "demo"


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of `keys` (numpy's SeedSequence): the one seeding helper."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> 1)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch: independent of workers, ranks and resumes."""
    return derive_seed(seed, epoch, index)


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


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch per worker from its generator; seed numpy and random the same way.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def train_loader(
    dataset: Dataset, *, batch_size: int, num_workers: int, seed: int, rank: int = 0, world_size: int = 1
) -> tuple[DataLoader, ResumableSampler, SeededSamples]:
    """Shuffled, seeded training batches of this rank (full batches only), pinned when CUDA is present.

    Returns the loader and the two objects to call `set_epoch` on before each epoch.
    """
    samples = SeededSamples(dataset, seed=seed)
    sampler = ResumableSampler(samples, num_replicas=world_size, rank=rank, seed=seed)
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
