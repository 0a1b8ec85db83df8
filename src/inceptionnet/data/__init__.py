"""Data: image decoding, transforms, crop geometry, seeded resumable loaders and the ImageNet class table."""

from inceptionnet.data.classes import ImageNetClass, imagenet_classes, imagenet_synsets
from inceptionnet.data.images import UNREADABLE, Batch, ImageFolder, collate_skipping_bad, read_image
from inceptionnet.data.loaders import (
    DEMO_DATA,
    ResumableSampler,
    SeededSamples,
    derive_seed,
    image_folders,
    limit_per_class,
    sample_seed,
    train_loader,
    val_loader,
)
from inceptionnet.data.transforms import COLOR_DISTORTIONS, INTERPOLATIONS, eval_transform, train_transform

__all__ = [
    "COLOR_DISTORTIONS",
    "DEMO_DATA",
    "INTERPOLATIONS",
    "UNREADABLE",
    "Batch",
    "ImageFolder",
    "ImageNetClass",
    "ResumableSampler",
    "SeededSamples",
    "collate_skipping_bad",
    "derive_seed",
    "eval_transform",
    "image_folders",
    "imagenet_classes",
    "imagenet_synsets",
    "limit_per_class",
    "read_image",
    "sample_seed",
    "train_loader",
    "train_transform",
    "val_loader",
]
