"""Data: image decoding, data sources (sources/), transforms, crop geometry, seeded resumable loaders and the
ImageNet class table."""

from inceptionnet.data.balanced import BalancedSampler
from inceptionnet.data.classes import ImageNetClass, imagenet_classes, imagenet_synsets
from inceptionnet.data.images import UNREADABLE, Batch, collate_skipping_bad, read_image
from inceptionnet.data.loaders import (
    DEMO_DATA,
    ResumableSampler,
    SeededSamples,
    ShardSampler,
    TrainSampler,
    derive_seed,
    sample_seed,
    train_loader,
    val_loader,
)
from inceptionnet.data.sources import ImageSource, SourceError, data_splits, open_split, split_classes
from inceptionnet.data.transforms import AUGMENTS, COLOR_DISTORTIONS, INTERPOLATIONS, eval_transform, train_transform

__all__ = [
    "AUGMENTS",
    "COLOR_DISTORTIONS",
    "DEMO_DATA",
    "INTERPOLATIONS",
    "UNREADABLE",
    "BalancedSampler",
    "Batch",
    "ImageNetClass",
    "ImageSource",
    "ResumableSampler",
    "SeededSamples",
    "ShardSampler",
    "SourceError",
    "TrainSampler",
    "collate_skipping_bad",
    "data_splits",
    "derive_seed",
    "eval_transform",
    "imagenet_classes",
    "imagenet_synsets",
    "open_split",
    "read_image",
    "sample_seed",
    "split_classes",
    "train_loader",
    "train_transform",
    "val_loader",
]
