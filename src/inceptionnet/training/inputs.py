"""The images a run trains and validates on: the image folders, this rank's seeded loaders, the schedule.

Each rank reads its own share of the training images (`ResumableSampler`), in an order that is a
pure function of (seed, epoch), and augments each image with a seed of (seed, epoch, index)
(`SeededSamples`), so the batches of a resumed run are those of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import DataLoader

from inceptionnet.data import (
    DEMO_DATA,
    ResumableSampler,
    SeededSamples,
    eval_transform,
    image_folders,
    train_loader,
    train_transform,
    val_loader,
)
from inceptionnet.models.registry import get_entry
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.optim import schedule


@dataclass(frozen=True)
class TrainingInputs:
    """This rank's training and validation batches, and what follows from their size."""

    classes: list[str]
    train_images: int  # in the whole training set (all ranks)
    input_size: int  # pixels, square
    loader: DataLoader  # this rank's training batches of the epoch set by `sampler` and `samples`
    sampler: ResumableSampler
    samples: SeededSamples
    val_batches: DataLoader  # this rank's share of the validation set
    steps_per_epoch: int
    lr_at: Callable[[int], float]  # the learning rate of a step


def set_up_inputs(cfg: TrainConfig, ctx: Context) -> TrainingInputs:
    """The configured image folders (default: the built-in demo data), loaded for this rank."""
    pre = get_entry(cfg.model).preprocessing
    size = cfg.input_size or pre.input_size
    augment = {"min_area": cfg.min_area, "color_distort": cfg.color_distort, "interpolation": cfg.train_interpolation}
    train_set, val_set = image_folders(
        cfg.data or DEMO_DATA,
        train_transform=train_transform(pre, input_size=size, **augment),
        val_transform=eval_transform(pre, input_size=size),
        train_per_class=cfg.train_per_class,
        val_per_class=cfg.val_per_class,
    )
    shard = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "rank": ctx.rank,
        "world_size": ctx.world_size,
    }
    loader, sampler, samples = train_loader(train_set, seed=cfg.seed, **shard)
    steps_per_epoch = sampler.num_samples // cfg.batch_size
    return TrainingInputs(
        classes=train_set.classes,
        train_images=len(train_set),
        input_size=size,
        loader=loader,
        sampler=sampler,
        samples=samples,
        val_batches=val_loader(val_set, **shard),
        steps_per_epoch=steps_per_epoch,
        lr_at=schedule(cfg, steps_per_epoch=steps_per_epoch),
    )
