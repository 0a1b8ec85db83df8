"""Classify image files with a pretrained network: top-k ImageNet classes with probabilities.

The class names ship with the package (assets/imagenet_classes.txt: one "<synset> <name>" line per
class, sorted by synset, i.e. class index 0..999). Images are prepared with the preprocessing of the
weights' tag. A file that cannot be read as an image gets an error of its own; the others are
still classified.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from inceptionnet.data import UNREADABLE, eval_transform, imagenet_classes, read_image
from inceptionnet.factory import create_model


@dataclass(frozen=True)
class TopClass:
    index: int
    synset: str
    name: str
    probability: float


@dataclass
class Prediction:
    """The result for one file: its top classes, or why it could not be classified."""

    path: str
    top: list[TopClass] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def predict(
    paths: Sequence[str | os.PathLike[str]],
    *,
    model: str | nn.Module = "inception_v4",
    weights: str | os.PathLike[str] | None = None,
    top_k: int = 5,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> list[Prediction]:
    """Top-k ImageNet classes of each image file, in the order of `paths`.

    `model` is a network name (built with `weights`, default: its default published weights) or a
    built network (its `preprocessing` is used). Unreadable files and non-images get a Prediction with
    `error` set; they do not stop the others.
    """
    net = create_model(model, weights=weights, pretrained=weights is None) if isinstance(model, str) else model
    classes = imagenet_classes()
    num_classes = getattr(net, "num_classes", None)
    if num_classes != len(classes):
        raise ValueError(
            f"the network has {num_classes} classes, not the {len(classes)} ImageNet classes that predict names; "
            "use ImageNet weights (or your own 1000-class checkpoint)"
        )
    if not 1 <= top_k <= len(classes):
        raise ValueError(f"top_k must be between 1 and {len(classes)}, got {top_k}")
    net = net.to(device).eval()
    transform = eval_transform(net.preprocessing)
    results = [Prediction(os.fspath(p)) for p in paths]
    ready: list[tuple[Prediction, torch.Tensor]] = []
    for result in results:
        path = Path(result.path)
        if not path.is_file():
            result.error = "no such file" if not path.exists() else "not a file"
            continue
        try:
            ready.append((result, transform(read_image(path))))
        except UNREADABLE as err:
            result.error = f"not a readable image ({type(err).__name__}: {err})"
    with torch.inference_mode():
        for start in range(0, len(ready), batch_size):
            chunk = ready[start : start + batch_size]
            probs = net(torch.stack([x for _, x in chunk]).to(device)).float().softmax(dim=1).cpu()
            values, indices = probs.topk(top_k, dim=1)
            for (result, _), v, i in zip(chunk, values.tolist(), indices.tolist(), strict=True):
                result.top = [TopClass(c, classes[c].synset, classes[c].name, p) for p, c in zip(v, i, strict=True)]
    return results


def format_predictions(results: Sequence[Prediction]) -> str:
    """Human-readable listing: per file, its classes with probabilities, or its error."""
    lines = []
    for r in results:
        lines.append(f"{r.path}:" if r.ok else f"{r.path}: error: {r.error}")
        lines.extend(f"  {t.probability:7.2%}  {t.name} ({t.synset}, class {t.index})" for t in r.top)
    return "\n".join(lines)


def predictions_to_json(results: Sequence[Prediction]) -> list[dict[str, object]]:
    return [
        {
            "path": r.path,
            "error": r.error,
            "top": [
                {"index": t.index, "synset": t.synset, "name": t.name, "probability": t.probability} for t in r.top
            ],
        }
        for r in results
    ]
