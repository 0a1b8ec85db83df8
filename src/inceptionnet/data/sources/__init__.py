"""Data sources behind one `--data`: each gives a split's images, targets and class names to the loaders.

`open_split(data, split)` opens split "train" or "val" of the data `data` names (or, with
`split=None`, `data` as one split: what `eval --data` takes). Which source a location is, is read
from what it holds (`source_kind`):

- WebDataset tar shards: `SPLIT/*.tar` and `SPLIT/_info.json` (shards.py);
- an image folder: `SPLIT/<class>/<image>` (folder.py);
- a metadata folder: `SPLIT/metadata.csv` or `SPLIT/metadata.jsonl` listing the images of SPLIT and their
  labels, the Hugging Face `imagefolder` convention (metadata.py);
- a Hugging Face dataset, as a whole (its splits inside): `hf:ORG/NAME`, a `save_to_disk` folder or a folder
  of parquet files (hf.py); `image_column` / `label_column` choose its columns.

`data_splits` opens the train/val pair a run trains on and checks that their class lists agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from inceptionnet.data.sources.base import ImageSource, SourceError, Target
from inceptionnet.data.sources.folder import FolderSource
from inceptionnet.data.sources.hf import HFSource, is_hf_dataset, open_hf_split
from inceptionnet.data.sources.metadata import MetadataSource, is_metadata_folder
from inceptionnet.data.sources.shards import ShardSource, is_shard_split
from inceptionnet.names import unprintable

SPLITS = ("train", "val")
# The validation split's folder: val/, else the other names `datasets` reads as its validation split, else
# test/ (CIFAR-10's layout).
_VAL_NAMES = ("val", "validation", "valid", "dev", "test")


def source_kind(location: str | Path) -> str:
    """Which source `location` (one split, or a Hugging Face dataset with its splits) is: "hf", "shards" (a
    split of tar shards), "metadata" (a split holding a metadata file), else "folder"."""
    if is_hf_dataset(location):
        return "hf"
    if is_shard_split(Path(location)):
        return "shards"
    if is_metadata_folder(location):
        return "metadata"
    return "folder"


def split_location(data: str | Path, split: str) -> Path:
    """Where split `split` ("train" or "val") of `data` is: DATA/train, DATA/val (else DATA/validation,
    DATA/valid, DATA/dev, DATA/test: the first that exists)."""
    if split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    root = Path(data)
    if split == "train":
        return root / "train"
    return next((root / name for name in _VAL_NAMES if (root / name).is_dir()), root / "val")


def open_split(
    data: str | Path,
    split: str | None = None,
    *,
    transform: Callable[[Any], Any] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> ImageSource:
    """Split `split` of `data` (or `data` itself as one split when `split` is None), as an ImageSource.

    `image_column` / `label_column` choose the columns of a source that has them (a Hugging Face dataset).
    """
    source = _open(data, split, transform=transform, image_column=image_column, label_column=label_column)
    bad = unprintable(source.classes)
    if bad:
        raise SourceError(
            f"{source.origin} has classes whose names hold control characters ({', '.join(bad[:5])}): a newline "
            "in a class name would shift every label after it in the files written from it; rename those classes"
        )
    return source


def _open(
    data: str | Path,
    split: str | None,
    *,
    transform: Callable[[Any], Any] | None,
    image_column: str | None,
    label_column: str | None,
) -> ImageSource:
    columns = {"image_column": image_column, "label_column": label_column}
    if source_kind(data) == "hf":
        return open_hf_split(data, split, transform=transform, **columns)
    if image_column is not None or label_column is not None:
        raise SourceError(f"{data} has no columns to choose: image and label columns apply to Hugging Face datasets")
    location = Path(data) if split is None else split_location(data, split)
    kind = source_kind(location)
    if kind == "folder":
        return FolderSource(location, transform=transform)
    if kind == "metadata":
        return MetadataSource(location, transform=transform)
    if kind == "shards":
        return ShardSource(location, transform=transform)
    raise SourceError(f"{location}: no reader for a {kind} source")


def split_classes(
    data: str | Path, split: str = "train", *, image_column: str | None = None, label_column: str | None = None
) -> list[str]:
    """The class names of a split, read without listing its images where the source allows (a folder's
    sorted subfolders): what sizes a classifier before the images are opened."""
    if source_kind(data) == "hf":
        return open_split(data, split, image_column=image_column, label_column=label_column).classes
    location = split_location(data, split)
    if source_kind(location) == "folder":
        if not location.is_dir():
            raise SourceError(
                f"data folder {data} does not exist or has no {split}/ folder; expected {data}/train/<class>/* "
                f"and {data}/val/<class>/*"
            )
        return sorted(entry.name for entry in location.iterdir() if entry.is_dir())
    return open_split(data, split).classes


def data_splits(
    data: str | Path,
    *,
    train_transform: Callable[[Any], Any],
    val_transform: Callable[[Any], Any],
    train_per_class: int = 0,
    val_per_class: int = 0,
    image_column: str | None = None,
    label_column: str | None = None,
) -> tuple[ImageSource, ImageSource]:
    """The train and val splits of `data`, checked before any training starts.

    `train_per_class` / `val_per_class` > 0 keep only the first N samples (in the source's order) of
    each class: a fixed, balanced subset for short experiments. Raises a SourceError that names the
    problem when a split is missing or empty, when the two splits' class lists differ (the class
    indices would silently disagree).
    `image_column` / `label_column`: as `open_split`.
    """
    columns = {"image_column": image_column, "label_column": label_column}
    root = Path(data)
    if not str(data).startswith("hf:") and not root.is_dir():
        raise SourceError(
            f"data folder {root} does not exist; expected {root}/train/<class>/* and {root}/val/<class>/*"
        )
    train = limit_per_class(open_split(data, "train", transform=train_transform, **columns), train_per_class)
    val = limit_per_class(open_split(data, "val", transform=val_transform, **columns), val_per_class)
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise SourceError(
            f"the class lists of {train.origin} and {val.origin} differ: only in train {only_train[:10]}, "
            f"only in val {only_val[:10]}; both splits must have the same classes"
        )
    return train, val


def limit_per_class(source: ImageSource, per_class: int) -> ImageSource:
    """Keep the first `per_class` samples of every class (all of them when `per_class` is 0), in place."""
    if per_class > 0:
        kept: dict[Target, int] = {}
        indices = []
        for i, target in enumerate(source.targets):
            if kept.get(target, 0) < per_class:
                kept[target] = kept.get(target, 0) + 1
                indices.append(i)
        source.keep(indices)
    return source


__all__ = [
    "SPLITS",
    "FolderSource",
    "HFSource",
    "ImageSource",
    "MetadataSource",
    "ShardSource",
    "SourceError",
    "Target",
    "data_splits",
    "limit_per_class",
    "open_split",
    "source_kind",
    "split_classes",
    "split_location",
]
