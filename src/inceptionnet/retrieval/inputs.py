"""What `embed DATA` reads: the images of a data source with their labels, or image files without.

One DATA that is a data source of `--data` (a folder of class folders DIR/<class>/<image>, a metadata folder,
WebDataset shards, a Hugging Face dataset: data/sources) gives each image its label; `split` picks DATA/train
or DATA/val of a dataset with splits. Anything else (image files, folders of images in no class layout,
several of them) is read as `predict` reads it: each image, recursively, without a label.

Each image has a key, its `path` in the embeddings file: the file for a file, else where the source says the
sample comes from (a shard member, a dataset row). The keys are what a rerun compares to find what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from inceptionnet.data import UNREADABLE, read_image
from inceptionnet.data.sources import ImageSource, open_split, source_kind
from inceptionnet.data.sources.base import FileSource
from inceptionnet.inference.predict import image_files

Label = str | list[str] | None
Transform = Callable[[Image.Image], torch.Tensor]


@dataclass
class Images:
    """The images to embed: their keys (in input order) and labels; `read(i)` gives image i prepared by
    `transform` (set once the network, and so its preprocessing, is known), or why it cannot be read."""

    keys: list[str]
    labels: list[Label]
    source: ImageSource | None = None  # a data source; None: `keys` are the files
    transform: Transform | None = None

    def read(self, i: int) -> tuple[torch.Tensor | None, str | None]:
        if self.transform is None:
            raise RuntimeError("set Images.transform (the network's eval_transform) before reading images")
        if self.source is None:
            return _read_file(self.keys[i], self.transform)
        self.source.transform = self.transform
        return _read_sample(self.source, i)


def is_source(data: Sequence[str], split: str | None) -> bool:
    """Whether `data` names one data source with labels (see the module's doc)."""
    if len(data) != 1:
        return False
    location = str(data[0])
    if split is not None or source_kind(location) != "folder":
        return True
    root = Path(location)
    if not root.is_dir():
        return False
    entries = list(root.iterdir())
    has_images = any(e.is_file() and e.suffix.lower() in IMG_EXTENSIONS for e in entries)
    return not has_images and any(e.is_dir() for e in entries)


def open_images(
    data: Sequence[str],
    *,
    split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> Images:
    """The images `data` names (see the module's doc), listed; set `transform` before reading them."""
    if not is_source(data, split):
        if image_column is not None or label_column is not None:
            raise ValueError("--image-column and --label-column choose the columns of a Hugging Face dataset")
        files = image_files(list(data))
        return Images(files, [None] * len(files))
    source = open_split(data[0], split, image_column=image_column, label_column=label_column)
    return Images(_keys(source), [_label(source, t) for t in source.targets], source)


def _keys(source: ImageSource) -> list[str]:
    if isinstance(source, FileSource):
        return [str(p) for p in source.paths]
    return [source.where(i) for i in range(len(source))]


def _label(source: ImageSource, target: Any) -> Label:
    if isinstance(target, tuple):
        return [source.classes[t] for t in target]
    return source.classes[target]


def _read_file(path: str, transform: Transform) -> tuple[torch.Tensor | None, str | None]:
    file = Path(path)
    if not file.is_file():
        return None, "no such file" if not file.exists() else "not a file"
    try:
        return transform(read_image(file)), None
    except UNREADABLE as err:
        return None, f"not a readable image ({type(err).__name__}: {err})"


def _read_sample(source: ImageSource, index: int) -> tuple[torch.Tensor | None, str | None]:
    try:
        sample = source[index]
    except OSError as err:  # a file of the source gone since it was listed
        return None, f"cannot be read ({err})"
    if sample is None:
        return None, "not a readable image"
    return sample[0], None


class Selected(Dataset):
    """The images at `indices` of `images`, read in that order (what one batch job's share needs)."""

    def __init__(self, images: Images, indices: list[int]) -> None:
        self.images, self.indices = images, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, str | None]:
        return self.images.read(self.indices[i])
