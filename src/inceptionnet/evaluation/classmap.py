"""Which output of a network is which class folder: the network's class names, ImageNet synsets, or the folder order."""

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
    rule: str  # "class names", "imagenet synsets" or "folder order"


def map_classes(
    folder_classes: Sequence[str],
    num_outputs: int,
    *,
    model: str = "the model",
    class_names: Sequence[str] | None = None,
) -> ClassMap:
    """Line up a network's outputs with an ImageFolder's (sorted) class folders.

    A network that names its classes (`class_names`: a run's class folders, the ImageNet synsets of
    published weights) maps each folder to the output of the same name; a folder holding some of
    the classes works, a folder the network does not know is an error that names it. Without
    names, a 1000-way network (or 1001-way, whose output 0 is TF's background class and is dropped)
    evaluated on folders named by ImageNet synsets maps each folder to the synset's index in the
    sorted ILSVRC-2012 list, so a folder with a subset of the classes works too. Otherwise the
    folder must have exactly as many classes as the network has outputs, matched in sorted order.
    """
    classes = list(folder_classes)
    if class_names is not None:
        return _by_name(classes, list(class_names), num_outputs, model=model)
    offset = 1 if num_outputs == 1001 else 0
    n = num_outputs - offset
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


def _by_name(classes: list[str], names: list[str], num_outputs: int, *, model: str) -> ClassMap:
    """Each folder class to the output of the same name."""
    if len(names) != num_outputs:
        raise ValueError(f"{model} names {len(names)} classes but has {num_outputs} outputs; its class names are wrong")
    index = {name: i for i, name in enumerate(names)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        missing = [n for n in names if n not in set(classes)]
        raise ValueError(
            f"the folder's classes differ from those of {model}: {_few(unknown)} are not among its "
            f"{len(names)} classes ({_few(names)}); its classes without a folder: {_few(missing)}. "
            "Evaluate on a folder with the network's class folders (a subset is fine)"
        )
    return ClassMap(0, num_outputs, tuple(index[c] for c in classes), "class names")


def _few(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")
