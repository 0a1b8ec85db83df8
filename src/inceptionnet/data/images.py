"""Reading images: one decoder with bounds, one tuple of decode errors, and batches that drop and count the
unreadable ones.

Every command and the server read images through `read_image`: only the formats of `FORMATS` are parsed
(Pillow has some forty parsers, some of which decode inside `Image.open`: an ICO whose directory says
16 x 16 may hold a large PNG; EPS hands the file to Ghostscript), and an image whose header gives more
than its pixel limit is refused before any pixel is decoded. Pillow's own bomb limit
(`Image.MAX_IMAGE_PIXELS`) is set to the same default, so no other path decodes more.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image, ImageOps
from torch.utils.data import default_collate

# The formats read, by Pillow's names (JPEG's parser also opens MPO, the JPEG of phones that hold several
# pictures). Anything else is refused by name, before a parser of it runs.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MAX_PIXELS = 89_478_485  # the largest image read by default: Pillow's own limit (a 0.25 GB RGB image)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Pillow only warns between its limit and twice it; here that is an error, in every thread (a process-wide filter).
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
Image.init()  # registers Pillow's plugins (none runs): `formats=` can then name WebP and TIFF


class ImageRefused(ValueError):
    """An image this reader does not decode: not one of FORMATS, or more pixels than its limit."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


# What reading raises for a file that is not a readable image (corrupt, truncated, not an image, refused).
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(path: str | Path | BinaryIO, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the whole file (a path, or an open binary file such as a shard member's bytes) to RGB, upright:
    truncated data fails here, not later in a batch; raises one of UNREADABLE (ImageRefused for a format not
    in FORMATS or an image of more than `max_pixels` pixels, before decoding it).

    A photo stored sideways with an EXIF orientation tag (as phones store them) is turned the way its
    tag says, as image viewers show it, so that every command sees it upright.
    """
    with open_image(path, max_pixels=max_pixels) as f:
        return ImageOps.exif_transpose(f).convert("RGB")


def open_image(path: str | Path | BinaryIO, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image at `path` opened (its header read, no pixel decoded) by one of the parsers of FORMATS, and
    within `max_pixels`; ImageRefused otherwise."""
    try:
        image = Image.open(path, formats=FORMATS)
    except Image.UnidentifiedImageError:
        raise ImageRefused(f"not an image of the formats read here ({', '.join(FORMATS)}), or damaged") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:  # above Pillow's limit
        raise ImageRefused(
            f"{err}".split(",")[0] + f", above the limit of {MAX_PIXELS / 1e6:g} MP", too_large=True
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageRefused(
            f"{width} x {height} = {width * height / 1e6:.1f} MP, above the limit of {max_pixels / 1e6:g} MP",
            too_large=True,
        )
    return image


def files_under(folder: str | os.PathLike[str], suffixes: Collection[str]) -> list[Path]:
    """The files below `folder` whose lower-cased suffix is one of `suffixes`, sorted. Links to folders are
    followed, as the training folders' reader (torchvision's make_dataset) follows them: a folder of links to
    class folders holds their images; each real folder is read once, so a link loop ends."""
    found, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        found += [Path(root, n) for n in names if Path(n).suffix.lower() in suffixes and Path(root, n).is_file()]
    return sorted(found)


def read_image_bytes(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """`read_image` of an encoded image held in memory (a dataset row, a shard member, an upload)."""
    return read_image(io.BytesIO(data), max_pixels=max_pixels)


@dataclass
class Batch:
    """One loader batch: the stacked readable images, their class indices (int, (N,)) or multi-hot vectors (float,
    (N, C): multi-label), and how many were unreadable."""

    images: torch.Tensor
    targets: torch.Tensor
    skipped: int  # unreadable images dropped from this batch

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory: DataLoader(pin_memory=True) calls this on any batch type that has it
        (without it a dataclass batch is passed on unpinned, and the copy to the GPU cannot overlap compute)."""
        return Batch(self.images.pin_memory(), self.targets.pin_memory(), self.skipped)


def collate_skipping_bad(samples: list[tuple[torch.Tensor, int | torch.Tensor] | None]) -> Batch:
    """Stack the readable samples of a batch; count the unreadable ones (returned as None).

    The images are stacked by torch's `default_collate`, which in a DataLoader worker stacks straight into
    shared memory: the batch then reaches the main process without another copy (measured: about 8% more
    images/s for batches of 32 at 299 px with two workers).
    """
    good = [s for s in samples if s is not None]
    skipped = len(samples) - len(good)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    images = default_collate([s[0] for s in good])
    if isinstance(good[0][1], torch.Tensor):  # multi-hot vectors (multi-label): an (N, C) float batch
        return Batch(images, torch.stack([s[1] for s in good]), skipped)
    targets = torch.tensor([s[1] for s in good], dtype=torch.long)
    return Batch(images, targets, skipped)
