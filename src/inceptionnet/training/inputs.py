"""The images a run trains and validates on: the image folders, this rank's seeded loaders, the schedule.

The images are prepared as the network expects (its `preprocessing`: mean, std, evaluation crop and
interpolation, the input size when `--input-size` is not given), so a network fine-tuned from
published weights sees its inputs as those weights did.

A split with several labels per image trains multi-label (`TrainConfig.label_mode`): its targets then
reach the step as float multi-hot vectors (N, C), single-label ones as class indices (N,).

Each rank reads its own share of the training images (`ResumableSampler`; its own shards of a
sharded split, `ShardSampler`; class-balanced draws with `--sampler balanced`, `BalancedSampler`), in
an order that is a pure function of (seed, epoch), and augments each image with a seed of (seed, epoch,
index) (`SeededSamples`), so the batches of a resumed run are those of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from inceptionnet.data import (
    DEMO_DATA,
    ImageSource,
    SeededSamples,
    TrainSampler,
    data_splits,
    eval_transform,
    split_classes,
    train_loader,
    train_transform,
    val_loader,
)
from inceptionnet.models import Preprocessing
from inceptionnet.models.registry import get_entry
from inceptionnet.training.balance import loss_weights
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.optim import schedule


@dataclass(frozen=True)
class TrainingInputs:
    """This rank's training and validation batches, and what follows from their size."""

    classes: list[str]
    label_mode: str  # "single" (int targets (N,)) or "multi" (float multi-hot targets (N, C))
    train_images: int  # in the whole training set (all ranks)
    input_size: int  # pixels, square
    preprocessing: Preprocessing  # how the images are prepared (the network's), at input_size
    loader: DataLoader  # this rank's training batches of the epoch set by `sampler` and `samples`
    sampler: TrainSampler
    samples: SeededSamples
    val_batches: DataLoader  # this rank's share of the validation set
    steps_per_epoch: int  # optimiser steps, each of cfg.accumulate batches
    class_weights: torch.Tensor | None  # the loss weights of --class-weights, on this rank's device
    lr_at: Callable[[int], float]  # the learning rate of a step


def training_classes(cfg: TrainConfig) -> list[str]:
    """The class names of the training split, read before its images are listed where the source allows:
    what sizes the classifier. `set_up_inputs` opens the splits and checks the rest."""
    return split_classes(cfg.data or DEMO_DATA, "train", image_column=cfg.image_column, label_column=cfg.label_column)


def training_transform(cfg: TrainConfig, pre: Preprocessing, *, input_size: int) -> Callable[..., Any]:
    """The augmentation a run of `cfg` applies to each training image (`data.train_transform` with the
    recipe's crop area, policy, colour distortion, interpolation and random erasing); the GPU check times
    this very transform. Mixup and cutmix act on whole batches, in the training step (mixing.py)."""
    names = ("min_area", "color_distort", "augment", "randaugment_magnitude", "randaugment_ops", "random_erasing")
    augment = {name: getattr(cfg, name) for name in names}
    return train_transform(pre, input_size=input_size, interpolation=cfg.train_interpolation, **augment)


def set_up_inputs(cfg: TrainConfig, ctx: Context, *, network: nn.Module | None = None) -> TrainingInputs:
    """The configured image folders (default: the built-in demo data), loaded for this rank.

    The images are prepared for `network` (its `preprocessing`) when given, else for the
    configured model's defaults; its classifier must have one output per class folder.
    """
    pre = network.preprocessing if network is not None else get_entry(cfg.model).preprocessing
    size = cfg.input_size or pre.input_size
    train_set, val_set = data_splits(
        cfg.data or DEMO_DATA,
        train_transform=training_transform(cfg, pre, input_size=size),
        val_transform=eval_transform(pre, input_size=size),
        train_per_class=cfg.train_per_class,
        val_per_class=cfg.val_per_class,
        image_column=cfg.image_column,
        label_column=cfg.label_column,
    )
    shard = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "rank": ctx.rank,
        "world_size": ctx.world_size,
    }
    if network is not None and network.num_classes != len(train_set.classes):
        raise ValueError(
            f"{len(train_set.classes)} classes in {train_set.origin} but the network has "
            f"{network.num_classes} outputs; did the data change while the run started?"
        )
    label_mode = resolve_label_mode(cfg.label_mode, train_set, val_set)
    for source in (train_set, val_set):
        source.give_multi_hot(label_mode == "multi")
    loader, sampler, samples = train_loader(train_set, seed=cfg.seed, balanced=cfg.sampler == "balanced", **shard)
    steps_per_epoch = sampler.num_samples // cfg.batch_size // cfg.accumulate
    if steps_per_epoch < 1:
        raise ValueError(
            f"{sampler.num_samples // cfg.batch_size} batches per process and epoch, fewer than --accumulate "
            f"{cfg.accumulate}; lower --accumulate or --batch-size"
        )
    weights = loss_weights(
        train_set.targets, train_set.classes, mode=cfg.class_weights, multi_label=label_mode == "multi"
    )
    return TrainingInputs(
        classes=train_set.classes,
        label_mode=label_mode,
        train_images=len(train_set),
        input_size=size,
        preprocessing=dataclasses.replace(pre, input_size=size),
        loader=loader,
        sampler=sampler,
        samples=samples,
        val_batches=val_loader(val_set, **shard),
        steps_per_epoch=steps_per_epoch,
        lr_at=schedule(cfg, steps_per_epoch=steps_per_epoch),
        class_weights=weights.to(ctx.device) if weights is not None else None,
    )


def resolve_label_mode(asked: str, train: ImageSource, val: ImageSource) -> str:
    """The label mode a run trains in: `asked` ("single" or "multi"), or for "auto" "multi" when a split has
    several labels per image. "single" on such data is refused (one softmax cannot say several classes);
    "multi" on single-label data trains each image's one class as a one-hot vector."""
    several = next((split for split in (train, val) if split.multi_label), None)
    if asked == "single" and several is not None:
        raise ValueError(
            f"{several.origin} has several labels per image, which --label-mode single cannot train; "
            "use --label-mode multi (or auto), or keep one label per image"
        )
    if asked == "auto":
        return "multi" if several is not None else "single"
    return asked
