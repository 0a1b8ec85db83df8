"""A class-balanced training order (`--sampler balanced`): every class drawn as often, whatever its size.

Each draw picks a class uniformly (among the classes that have images), then an image of that class
uniformly, with replacement; an epoch is as many draws as the split has images. Both steps in one: image i
is drawn with probability proportional to 1 / count(its class). A multi-label image weighs the mean of
its classes' 1 / count, so an image of a rare class and a common one is drawn more often than an image of
the common class alone, less than one of the rare class alone.

The draws of an epoch are a pure function of (seed, epoch): rank r of W takes draws r, r + W, ...
(as DistributedSampler deals out its permutation), and `set_epoch(epoch, start=k)` skips the first k
of them, so a resumed run reads exactly the images an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from inceptionnet.data.seeds import derive_seed
from inceptionnet.data.sources.base import Target

_BALANCED_ORDER = 0x4241  # keeps these seeds apart from the augmentation seeds (seed, epoch, index)


def balanced_sample_weights(targets: Sequence[Target]) -> torch.Tensor:
    """Each sample's draw weight (float64): 1 / count of its class, or the mean over its classes (multi-label)."""
    labels = [t if isinstance(t, tuple) else (t,) for t in targets]
    if any(not t for t in labels):
        raise ValueError("--sampler balanced: an image without any class cannot be drawn by class; drop it")
    flat = torch.tensor([c for t in labels for c in t], dtype=torch.long)
    sizes = torch.tensor([len(t) for t in labels], dtype=torch.long)
    owner = torch.repeat_interleave(torch.arange(len(labels)), sizes)  # the sample of each entry of `flat`
    inverse = 1.0 / torch.bincount(flat).double()
    sums = torch.zeros(len(labels), dtype=torch.float64).index_add_(0, owner, inverse[flat])
    return sums / sizes


class BalancedSampler(Sampler[int]):
    """This rank's class-balanced draws of one epoch (with replacement), resumable mid-epoch.

    Same interface as ResumableSampler: `num_samples` per rank (ceil(N / num_replicas)), and
    `set_epoch(epoch, start=k)` skips the first k draws of this rank (those an interrupted run trained on).
    """

    def __init__(self, targets: Sequence[Target], *, num_replicas: int, rank: int, seed: int) -> None:
        self.weights = balanced_sample_weights(targets)
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.num_samples = math.ceil(len(targets) / num_replicas)
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def draws(self) -> list[int]:
        """Every rank's draws of the current epoch, interleaved (rank r's are [r::num_replicas])."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, _BALANCED_ORDER))
        total = self.num_samples * self.num_replicas
        return torch.multinomial(self.weights, total, replacement=True, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.draws()[self.rank :: self.num_replicas][self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start
