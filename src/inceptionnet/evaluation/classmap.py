"""Which output of a network is which class folder: ImageNet synsets, or the folder order."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from inceptionnet.data import imagenet_synsets

_SYNSET = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ClassMap:
    """How a network's outputs line up with the folder's classes."""

    offset: int  # 1 when output 0 is the background class of TF-trained 1001-way networks, else 0
    num_classes: int  # outputs after the offset; the softmax runs over these
    target_index: tuple[int, ...]  # the output (after the offset) of each folder class, in folder order
    rule: str  # "imagenet synsets" or "folder order"


def map_classes(folder_classes: Sequence[str], num_outputs: int, *, model: str = "the model") -> ClassMap:
    """Line up a network's outputs with an ImageFolder's (sorted) class folders.

    A 1000-way network (or 1001-way, whose output 0 is TF's background class and is dropped)
    evaluated on folders named by ImageNet synsets maps each folder to the synset's index in the
    sorted ILSVRC-2012 list, so a folder with a subset of the classes works too. Otherwise the
    folder must have exactly as many classes as the network has outputs, matched in sorted order.
    """
    offset = 1 if num_outputs == 1001 else 0
    n = num_outputs - offset
    classes = list(folder_classes)
    if n == 1000 and classes and all(_SYNSET.match(c) for c in classes):
        index = {s: i for i, s in enumerate(imagenet_synsets())}
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise ValueError(
                f"class folders {unknown[:5]} are not ILSVRC-2012 synsets, so they cannot be matched to the "
                f"outputs of the 1000-class {model}; rename or remove them"
            )
        return ClassMap(offset, n, tuple(index[c] for c in classes), "imagenet synsets")
    if len(classes) == n:
        return ClassMap(offset, n, tuple(range(n)), "folder order")
    shown = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "")
    raise ValueError(
        f"the folder has {len(classes)} class folders ({shown}) but {model} has {num_outputs} outputs; use a folder "
        f"with one sub-folder per output (matched in sorted order), or ImageNet synset folders (n01440764, ...) "
        f"for a 1000- or 1001-class network"
    )
