"""Writing any data source as WebDataset tar shards (`inceptionnet shards SRC DST`): what `train --data DST` reads
on many nodes (data/sources/shards.py).

DST/train/*.tar and DST/val/*.tar, each split with its `_info.json` (shard names, samples per shard,
class names), and DST/_info.json in timm's whole-dataset form (`splits` -> `filenames` relative to
DST; val listed again as "validation", timm's default split name), so that timm's wds reader takes the
same folder. A sample is `KEY.<ext>` (the image) and `KEY.cls` (its class index), or `KEY.json`
(`{"labels": [...]}`) for several labels (timm: `target_key="labels"`); KEY is the sample's index in the
source (8 digits), which names the image it came from (`ImageSource.where`).

Images are copied as the source stores them (JPEG, PNG and WebP files: no decoding, no quality lost;
a .jpeg or .JPEG file becomes a .jpg member, the extension timm's reader looks for); anything else
(a BMP, a TIFF, a decoded image) is written as PNG, lossless, and so is an image whose EXIF orientation
tag turns it (a phone's photo stored sideways): written upright, so that readers which ignore the tag
(timm's and webdataset's decoders) see the picture `read_image` gives. The training split is written in a
seeded shuffled order: the shard sampler shuffles shards and samples within a shard, never across
shards, so a shard must already hold a mix of classes. The validation split keeps the
source's order. Everything is written to a temporary folder beside DST, renamed to DST at the end:
an interrupted run leaves no half-written dataset.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import ExifTags

from inceptionnet.data.images import UNREADABLE, open_image
from inceptionnet.data.sources import SPLITS, ImageSource, SourceError, open_split
from inceptionnet.data.sources.shards import IMAGE_EXTENSIONS, INFO_NAME, write_index
from inceptionnet.extras import require

DEFAULT_SHARD_SIZE = 1000  # samples per shard: ~100 MB of ImageNet JPEGs, a few hundred shards for a node to share


@dataclass(frozen=True)
class WrittenSplit:
    """What `write_shards` wrote for one split."""

    name: str
    samples: int
    shard_lengths: list[int]
    encoded_as_png: int  # images the source held in another format (or decoded), written as PNG
    unreadable: int  # images that could not be decoded to be written as PNG, left out


def _sample(source: ImageSource, index: int) -> tuple[dict[str, Any], bool] | None:
    """The tar members of sample `index` and whether its image was encoded here; None when it cannot be read."""
    stored = source.encoded(index)
    if stored is not None and stored[1] in IMAGE_EXTENSIONS and _upright(stored[0]):
        (image, ext), encoded_here = stored, False
        ext = "jpg" if ext == "jpeg" else ext  # the same bytes; timm's reader looks for jpg, png and webp only
    else:
        try:
            decoded = source.load(index)
        except UNREADABLE:
            return None
        buffer = io.BytesIO()
        decoded.save(buffer, format="PNG")
        image, ext, encoded_here = buffer.getvalue(), "png", True
    target = source.targets[index]
    label = {"json": json.dumps({"labels": list(target)})} if isinstance(target, tuple) else {"cls": str(target)}
    return {"__key__": f"{index:08d}", ext: image, **label}, encoded_here


def _upright(image: bytes) -> bool:
    """Whether encoded `image` shows as stored: no EXIF orientation tag that turns it (an unreadable header
    counts as upright: the bytes are copied as they are, and the reader skips them as it would the file)."""
    try:
        with open_image(io.BytesIO(image)) as opened:
            return opened.getexif().get(ExifTags.Base.Orientation, 1) == 1
    except UNREADABLE:
        return True


def _write_split(source: ImageSource, folder: Path, name: str, *, shard_size: int, seed: int) -> WrittenSplit:
    tar_writer = require("webdataset", extra="shards", purpose="writing shards").TarWriter  # reading needs none
    order = list(range(len(source)))
    if name == "train":
        random.Random(seed).shuffle(order)
    folder.mkdir(parents=True)
    lengths: list[int] = []
    png = unreadable = 0
    for first in range(0, len(order), shard_size):
        path = folder / f"{name}-{len(lengths):06d}.tar"
        with open(path, "wb") as f:
            with tar_writer(f, mtime=0) as tar:  # mtime 0: the same source gives the same bytes
                written = 0
                for index in order[first : first + shard_size]:
                    sample = _sample(source, index)
                    if sample is None:
                        unreadable += 1
                        continue
                    tar.write(sample[0])
                    png, written = png + sample[1], written + 1
            f.flush()
            os.fsync(f.fileno())
        write_index(path)  # readers then skip scanning the tar headers
        lengths.append(written)
    filenames = [f"{name}-{i:06d}.tar" for i in range(len(lengths))]
    info = {"name": name, "num_samples": sum(lengths), "filenames": filenames, "shard_lengths": lengths}
    (folder / INFO_NAME).write_text(json.dumps({**info, "classes": source.classes}, indent=1), encoding="utf-8")
    return WrittenSplit(name, sum(lengths), lengths, png, unreadable)


def write_shards(
    src: str | Path,
    dst: str | Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    seed: int = 0,
    progress: Callable[[WrittenSplit], None] | None = None,
) -> list[WrittenSplit]:
    """Write the train and val splits of `src` (any source `open_split` reads) as tar shards in the new folder `dst`.

    `shard_size` is the number of samples per shard; `seed` orders the training samples. `progress`
    is called after each split. Raises SourceError when `dst` already holds files (nothing is
    overwritten) or `src` cannot be read.
    """
    dst = Path(dst)
    if shard_size < 1:
        raise SourceError(f"--shard-size must be at least 1 sample per shard, not {shard_size}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise SourceError(f"{dst} already exists and is not an empty folder; choose a new folder or remove it")
    sources = {name: open_split(src, name) for name in SPLITS}  # both readable before anything is written
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex}.tmp"  # made with the umask, unlike mkdtemp's 0700
    tmp.mkdir()
    try:
        written = []
        for name, source in sources.items():
            written.append(_write_split(source, tmp / name, name, shard_size=shard_size, seed=seed))
            if progress is not None:
                progress(written[-1])
        (tmp / INFO_NAME).write_text(json.dumps(_timm_info(dst.name, written), indent=1), encoding="utf-8")
        if dst.exists():
            dst.rmdir()  # empty (checked above)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def _timm_info(name: str, written: list[WrittenSplit]) -> dict[str, Any]:
    """DST/_info.json as timm's wds reader reads it: `create_dataset("wds/NAME", root=DST, split=...)` with split
    "train", "val" or "validation" (timm's default name of the validation split: the val shards again)."""
    splits = {
        w.name: {
            "name": w.name,
            "num_samples": w.samples,
            "filenames": [f"{w.name}/{w.name}-{i:06d}.tar" for i in range(len(w.shard_lengths))],
            "shard_lengths": w.shard_lengths,
        }
        for w in written
    }
    # timm names the validation split "validation" (its default --val-split): the same shards under both names
    return {"name": name, "splits": {**splits, "validation": {**splits["val"], "name": "validation"}}}
