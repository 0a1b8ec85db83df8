"""The ImageNet-1k class table that ships with the package (assets/imagenet_classes.txt)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class ImageNetClass:
    """One row of the class table: output index, WordNet id and a readable name."""

    index: int
    synset: str  # WordNet id, e.g. "n01440764"
    name: str  # e.g. "tench"


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet-1k classes in index order (synsets sorted, as in every published checkpoint)."""
    text = resources.files("inceptionnet").joinpath("assets/imagenet_classes.txt").read_text(encoding="utf-8")
    rows = [line.split(" ", 1) for line in text.splitlines() if line.strip()]
    return tuple(ImageNetClass(i, synset, name) for i, (synset, name) in enumerate(rows))


def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 WordNet ids in sorted order: the class order of every ImageNet-1k checkpoint."""
    return tuple(c.synset for c in imagenet_classes())
