"""The one seeding helper: every random choice of a run is seeded by a pure function of its keys."""

from __future__ import annotations

import numpy as np


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of `keys` (numpy's SeedSequence): the one seeding helper."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> 1)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch: independent of workers, ranks and resumes."""
    return derive_seed(seed, epoch, index)
