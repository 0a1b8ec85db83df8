"""Evaluation split over torchrun's processes: each rank scores its share of the images, the counts are summed.

Rank r takes the images at positions i % world_size == r of the split (after `max_images`), so every
image is scored once; the top-1 / top-5 counts, per class, and the unreadable images are integers, so
their sum over the ranks is exactly the one-process result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, Subset

from inceptionnet.evaluation.scores import Tally
from inceptionnet.ranks import Ranks, all_sum


def check_sharding(ranks: Ranks | None, *, keep_predictions: bool) -> None:
    """Refuse what a split evaluation cannot give: each image's probabilities stay on the rank that scored it."""
    if keep_predictions and ranks is not None and ranks.distributed:
        raise ValueError(
            "the probabilities of each image (a report) are kept in one process only; run without torchrun"
        )


def rank_share(dataset: Dataset, ranks: Ranks | None) -> Dataset:
    """This rank's images of `dataset` (the dataset itself in a single process)."""
    if ranks is None or not ranks.distributed:
        return dataset
    return Subset(dataset, ranks.share(range(len(dataset))))  # type: ignore[arg-type]


def sum_over_ranks(tallies: Sequence[Tally], skipped: int, ranks: Ranks | None) -> int:
    """Add every rank's counts into `tallies` (in place, on every rank); returns the unreadable images of all."""
    if ranks is None or not ranks.distributed:
        return skipped
    mine = torch.stack([torch.stack([t.images, t.top1, t.top5]) for t in tallies])
    total = all_sum(torch.cat([mine.reshape(-1), torch.tensor([skipped])]), ranks)
    for tally, (images, top1, top5) in zip(tallies, total[:-1].view_as(mine), strict=True):
        tally.images, tally.top1, tally.top5 = images.clone(), top1.clone(), top5.clone()
    return int(total[-1])
