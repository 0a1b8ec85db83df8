"""Does the heat map point at the object? The quadrant check of `inference.explain`.

Each image is pasted into one quadrant of a neutral grey canvas twice its size, and the Grad-CAM map
of its own class is computed on the whole canvas: the check counts how often the map's peak falls in
that quadrant. Grey carries no class evidence, so a map that follows the object scores near 100%,
and one that ignores it scores the 25% of chance. Each image goes into every quadrant once, so
that a map biased to one position cannot score above chance.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from inceptionnet.data.sources import limit_per_class, open_split
from inceptionnet.factory import load_model
from inceptionnet.inference.explain import class_index, explain
from inceptionnet.inference.predict import class_labels
from inceptionnet.models import InceptionNetwork

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
GREY = (128, 128, 128)  # mid grey: the canvas adds nothing a class could be recognised by


@dataclass(frozen=True)
class PointingRate:
    """How often the heat map's peak fell in the quadrant holding the image, per quadrant."""

    hits: tuple[int, ...]  # per quadrant, in QUADRANTS' order
    trials: int  # images per quadrant

    @property
    def rate(self) -> float:
        return sum(self.hits) / (len(self.hits) * self.trials) if self.trials else 0.0

    def format(self) -> str:
        per = ", ".join(f"{q} {h}/{self.trials}" for q, h in zip(QUADRANTS, self.hits, strict=True))
        return f"peak in the image's quadrant: {self.rate:.1%} of {len(self.hits) * self.trials} (chance 25%; {per})"


def quadrant_image(image: Image.Image, quadrant: int, size: int) -> Image.Image:
    """A grey `size` x `size` canvas with `image` resized into quadrant `quadrant` (0-3, as QUADRANTS)."""
    half = size // 2
    canvas = Image.new("RGB", (2 * half, 2 * half), GREY)
    canvas.paste(image.convert("RGB").resize((half, half), Image.Resampling.BILINEAR), _corner(quadrant, half))
    return canvas


def peak_quadrant(heatmap: np.ndarray) -> int:
    """The quadrant (0-3, as QUADRANTS) of the heat map's maximum (the first one on ties), by the pixel's
    centre: the middle row and column of an odd-sized map count as bottom and right."""
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    height, width = heatmap.shape
    return 2 * int(row + 0.5 >= height / 2) + int(col + 0.5 >= width / 2)


def pointing_rate(
    model: str | InceptionNetwork,
    data: str | os.PathLike[str],
    *,
    per_class: int = 10,
    device: str | torch.device | None = None,
) -> PointingRate:
    """The quadrant check on the first `per_class` images of each class of `data` (an image folder or
    any source `open_split` reads), each in all four quadrants. Classes are matched by name (by index
    for a network without class names).

    The canvas is twice the network's input size, so that each image is seen at the size the network
    was trained at, and the map has more than one cell per quadrant.
    """
    net = load_model(os.fspath(model), pretrained=True) if not isinstance(model, InceptionNetwork) else model
    labels = class_labels(net.card)
    source = limit_per_class(open_split(data), per_class)
    pre = net.preprocessing
    size = 2 * pre.input_size
    canvas = math.floor(size / pre.crop_fraction)  # the eval view crops the canvas back to `size`
    hits = [0] * len(QUADRANTS)
    for i in range(len(source)):
        target = _single(source.targets[i])
        if net.card.class_names is not None:  # the data's class order may differ from the network's
            target = class_index(labels, source.classes[target], model_name=net.card.model_name)
        image = source.load(i)
        canvases = [quadrant_image(image, q, canvas) for q in range(len(QUADRANTS))]
        found = explain(net, canvases, target=target, input_size=size, device=device)
        for q, e in enumerate(found):
            hits[q] += peak_quadrant(e.heatmap) == q
    return PointingRate(tuple(hits), len(source))


def _corner(quadrant: int, half: int) -> tuple[int, int]:
    if not 0 <= quadrant < len(QUADRANTS):
        raise ValueError(f"quadrant must be 0 to 3 ({', '.join(QUADRANTS)}), got {quadrant}")
    return (quadrant % 2) * half, (quadrant // 2) * half


def _single(target: int | tuple[int, ...]) -> int:
    if isinstance(target, tuple):
        raise ValueError("the quadrant check needs one class per image; this data has several labels per image")
    return target
