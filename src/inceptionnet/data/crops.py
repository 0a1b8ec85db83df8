"""View geometry of the paper's evaluation protocols: 1, 10, 12 and 144 crops (docs/evaluation.md).

Every scheme is a pure function of the image size that returns `View`s: resize the whole image to
`scale` (height, width), take `box` from it, resize the box to the network's input size if it is not
that size already, and mirror it if `mirror`. Keeping the geometry free of pixels makes each scheme
testable on its numbers alone; `render_views` is the one place that touches pixels.

The resized sizes and centre offsets use torchvision's own rounding (`Resize(int)` and
`CenterCrop`), so the single view is pixel-for-pixel `inceptionnet.data.eval_transform`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as F

from inceptionnet.data.transforms import INTERPOLATIONS

CROP_SCHEMES = (1, 10, 12, 144)

# GoogLeNet's 144-crop scales (shorter side) for its 224-pixel crops (Szegedy et al. 2014, section 10).
GOOGLENET_SCALES_224 = (256, 288, 320, 352)

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right and bottom exclusive


@dataclass(frozen=True)
class View:
    """One view of an image: resize the image to `scale`, crop `box`, resize to the input size, mirror."""

    scale: tuple[int, int]  # (height, width) the whole image is resized to first
    box: Box  # in the resized image
    mirror: bool  # flip the crop left-right

    @property
    def box_size(self) -> tuple[int, int]:
        """(height, width) of the box before it is resized to the input size."""
        left, top, right, bottom = self.box
        return bottom - top, right - left


def resized_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to `shorter`, keeping the aspect ratio.

    The longer side is truncated, as torchvision's `Resize(shorter)` does.
    """
    if width <= height:
        return int(shorter * height / width), shorter
    return shorter, int(shorter * width / height)


def center_box(height: int, width: int, size: int) -> Box:
    """The central `size` x `size` box of a `height` x `width` image (torchvision's CenterCrop offsets)."""
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return left, top, left + size, top + size


def corner_boxes(height: int, width: int, size: int) -> list[Box]:
    """The four `size` x `size` corner boxes: top-left, top-right, bottom-left, bottom-right."""
    return [
        (0, 0, size, size),
        (width - size, 0, width, size),
        (0, height - size, size, height),
        (width - size, height - size, width, height),
    ]


def square_boxes(height: int, width: int) -> list[Box]:
    """GoogLeNet's three squares of side min(height, width): left, centre, right (top, centre, bottom if portrait)."""
    side = min(height, width)
    center = center_box(height, width, side)
    if width >= height:
        return [(0, 0, side, side), center, (width - side, 0, width, side)]
    return [(0, 0, side, side), center, (0, height - side, side, height)]


def _with_mirrors(scale: tuple[int, int], boxes: list[Box]) -> list[View]:
    return [View(scale, b, False) for b in boxes] + [View(scale, b, True) for b in boxes]


def _check(height: int, width: int, input_size: int, crop_fraction: float) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width} is empty")
    if input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")


def eval_resize(input_size: int, crop_fraction: float) -> int:
    """Shorter side before the central crop: floor(input_size / crop_fraction), as `eval_transform`."""
    return math.floor(input_size / crop_fraction)


def single_crop(height: int, width: int, *, input_size: int, crop_fraction: float) -> list[View]:
    """1 view: shorter side to floor(input_size / crop_fraction), central input_size square."""
    _check(height, width, input_size, crop_fraction)
    h, w = resized_size(height, width, eval_resize(input_size, crop_fraction))
    return [View((h, w), center_box(h, w, input_size), False)]


def ten_crops(height: int, width: int, *, input_size: int, crop_fraction: float) -> list[View]:
    """10 views (He et al.): at the single-crop scale, 4 corners and the centre, and their mirrors."""
    _check(height, width, input_size, crop_fraction)
    h, w = resized_size(height, width, eval_resize(input_size, crop_fraction))
    return _with_mirrors((h, w), [*corner_boxes(h, w, input_size), center_box(h, w, input_size)])


def twelve_crops(height: int, width: int, *, input_size: int, crop_fraction: float) -> list[View]:
    """12 views (our reading of the paper): the 10 crops plus the central square resized whole, and its mirror.

    The central square has the side of the resized image's shorter side, so it holds the whole
    image for square images and the central part of the longer side otherwise.
    """
    _check(height, width, input_size, crop_fraction)
    h, w = resized_size(height, width, eval_resize(input_size, crop_fraction))
    boxes = [*corner_boxes(h, w, input_size), center_box(h, w, input_size), center_box(h, w, min(h, w))]
    return _with_mirrors((h, w), boxes)


def multi_scale_sizes(input_size: int) -> tuple[int, ...]:
    """GoogLeNet's four shorter sides, scaled from its 224 crop: round(input_size * s / 224).

    For 299: 342, 384, 427, 470.
    """
    return tuple(round(input_size * s / 224) for s in GOOGLENET_SCALES_224)


def googlenet_crops(height: int, width: int, *, input_size: int, scales: tuple[int, ...] | None = None) -> list[View]:
    """144 views (GoogLeNet): 4 scales x 3 squares x (4 corners, centre, whole square) x mirror.

    At each scale (shorter side) the left, centre and right squares are taken (top, centre, bottom
    for portrait images); from each square its four input_size corners, its input_size centre and
    the whole square resized to input_size, and the mirrors of those six.
    """
    _check(height, width, input_size, 1.0)
    scales = multi_scale_sizes(input_size) if scales is None else scales
    if any(s < input_size for s in scales):
        raise ValueError(f"every scale must be at least the input size {input_size}, got {scales}")
    views: list[View] = []
    for shorter in scales:
        h, w = resized_size(height, width, shorter)
        for left, top, right, _ in square_boxes(h, w):
            side = right - left
            inner = [*corner_boxes(side, side, input_size), center_box(side, side, input_size), (0, 0, side, side)]
            boxes = [(left + a, top + b, left + c, top + d) for a, b, c, d in inner]
            views.extend(_with_mirrors((h, w), boxes))
    return views


def views_for(crops: int, height: int, width: int, *, input_size: int, crop_fraction: float) -> list[View]:
    """The views of scheme `crops` (1, 10, 12 or 144) for a `height` x `width` image."""
    if crops == 1:
        return single_crop(height, width, input_size=input_size, crop_fraction=crop_fraction)
    if crops == 10:
        return ten_crops(height, width, input_size=input_size, crop_fraction=crop_fraction)
    if crops == 12:
        return twelve_crops(height, width, input_size=input_size, crop_fraction=crop_fraction)
    if crops == 144:
        return googlenet_crops(height, width, input_size=input_size)
    raise ValueError(f"crops must be one of {CROP_SCHEMES}, got {crops}")


def render_views(
    image: torch.Tensor, views: list[View], *, input_size: int, interpolation: str = "bicubic"
) -> torch.Tensor:
    """Cut `views` out of a (C, H, W) image: a (len(views), C, input_size, input_size) tensor of its dtype.

    Resizing is antialiased with `interpolation` ("bilinear", "bicubic" or "nearest"). Each scale is
    resized once and each box once; a mirrored view flips the crop of its unmirrored twin.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {sorted(INTERPOLATIONS)}")
    mode = INTERPOLATIONS[interpolation]
    resized: dict[tuple[int, int], torch.Tensor] = {}
    crops: dict[tuple[tuple[int, int], Box], torch.Tensor] = {}
    out = image.new_empty((len(views), image.shape[0], input_size, input_size))  # filled in place: no stack copy
    for i, v in enumerate(views):
        key = (v.scale, v.box)
        if key not in crops:
            if v.scale not in resized:
                resized[v.scale] = F.resize(image, list(v.scale), interpolation=mode, antialias=True)
            left, top, right, bottom = v.box
            crop = resized[v.scale][..., top:bottom, left:right]
            if v.box_size != (input_size, input_size):
                crop = F.resize(crop, [input_size, input_size], interpolation=mode, antialias=True)
            crops[key] = crop
        out[i] = F.horizontal_flip(crops[key]) if v.mirror else crops[key]
    return out
