"""WebDataset tar shards: `SPLIT/*.tar` and `SPLIT/_info.json`, the data every node of a large job streams.

A sample is the run of tar members that share a key (the member name up to the first dot of its file
name, WebDataset's convention): `KEY.jpg` / `.jpeg` / `.png` / `.webp` holds the encoded image and
`KEY.cls` its class index as text, or `KEY.json` its label(s) (`{"label": 3}`, `{"labels": [1, 4]}`).

`_info.json` describes the split with the field names timm's wds reader uses for one split
(`num_samples`, `filenames`, `shard_lengths`), plus `classes` (the class names in target order; without
it the classes are named "0", "1", ... up to the largest index). Every `*.tar` of the folder must be
listed there and each shard must hold the number of samples listed, so a shard that was added, lost
or cut short is an error before training starts, not a silently smaller epoch.

Why map-style and not a stream: a stream cannot start in the middle of an epoch, so a resumed run
would see other batches than an uninterrupted one. Here the members are indexed once (their tar
headers give each member's data offset and size; tarfile lists them without reading the images;
the index is kept per shard file in the process, and `inceptionnet shards` stores it beside each shard as
NAME.tar.idx.json, used only while the tar keeps its size and modification time and each offset it
gives lands just after the tar header of the member it names; the labels are always read from the
tar's own members) and sample i is one seek and one read. The
training sampler (`data.loaders.ShardSampler`) still reads shard by shard: each rank gets its own
shards and visits them one after the other, so a node reads a few files, each from start to end
in a shuffled order, as a streaming reader would, and a resume skips the first k samples exactly.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from inceptionnet.data.images import read_image
from inceptionnet.data.sources.base import ImageSource, SourceError, Target

INFO_NAME = "_info.json"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # the image member of a sample: the first of these it has
INDEX_SUFFIX = ".idx.json"  # NAME.tar.idx.json: the member index of NAME.tar, written by `inceptionnet shards`
_REMAKE = "re-create the shards with `inceptionnet shards SRC DST`"

Member = tuple[int, int, bytes | None]  # data offset, size, and the data itself for the small label members


@dataclass(frozen=True)
class ShardSample:
    """Where one sample's image is: shard number (in `_info.json` order), member name, data offset and size."""

    shard: int
    name: str
    offset: int
    size: int


def is_shard_split(location: Path) -> bool:
    """Whether `location` is a split of tar shards (an `_info.json` or a `*.tar` in it)."""
    return location.is_dir() and ((location / INFO_NAME).is_file() or any(location.glob("*.tar")))


_INDEX: dict[tuple[str, int, int], dict[str, dict[str, Member]]] = {}  # (path, size, mtime) -> key -> ext -> member


def _split_name(name: str) -> tuple[str, str]:
    """(key, extension) of a member name: WebDataset's key is the path up to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


def index_shard(path: Path) -> dict[str, dict[str, Member]]:
    """The samples of one shard, in member order: key -> extension -> (offset, size, label bytes or None).

    Reads the tar headers (and the small .cls / .json members) only; cached per file, size and mtime.
    """
    stat = path.stat()
    cache_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _INDEX:
        _INDEX[cache_key] = _stored_index(path, stat) or _scanned_index(path, stat.st_size)
    return _INDEX[cache_key]


def _scanned_index(path: Path, size: int) -> dict[str, dict[str, Member]]:
    """The index of a shard read from its tar headers (about 0.1 ms per sample from the page cache)."""
    samples: dict[str, dict[str, Member]] = {}
    try:
        with tarfile.open(path, "r:") as tar:  # uncompressed: a member is read by one seek
            for member in tar:
                if not member.isfile():
                    continue
                if member.offset_data + member.size > size:
                    raise tarfile.ReadError(f"member {member.name} runs past the end of the file")
                key, ext = _split_name(member.name)
                label = tar.extractfile(member).read() if ext in ("cls", "json") else None  # type: ignore[union-attr]
                samples.setdefault(key, {})[ext] = (member.offset_data, member.size, label)
    except (tarfile.TarError, EOFError) as err:
        raise SourceError(f"shard {path} is truncated or damaged ({err}); {_REMAKE}") from None
    return samples


def index_path(shard: Path) -> Path:
    """Where the member index of `shard` is kept: NAME.tar.idx.json beside it."""
    return shard.parent / (shard.name + INDEX_SUFFIX)


def write_index(shard: Path) -> None:
    """Keep the member index of `shard` beside it, with the tar's size and modification time, so that readers
    skip the header scan (the labels are not kept: they are read from the tar's members)."""
    samples = {
        key: {ext: [offset, size] for ext, (offset, size, _) in m.items()} for key, m in index_shard(shard).items()
    }
    stat = shard.stat()
    index = {"tar_size": stat.st_size, "tar_mtime_ns": stat.st_mtime_ns, "samples": samples}
    index_path(shard).write_text(json.dumps(index), encoding="utf-8")


def _stored_index(shard: Path, stat: os.stat_result) -> dict[str, dict[str, Member]] | None:
    """The index kept beside `shard`, checked against the tar, or None (its headers are read again) where there
    is none, it is unreadable, it describes a tar of another size or modification time, or one of its offsets
    does not follow the tar header of the member it names. The labels are read from the tar's members."""
    path = index_path(shard)
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if (stored["tar_size"], stored.get("tar_mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            return None
        members = {
            key: {ext: (int(m[0]), int(m[1])) for ext, m in exts.items()} for key, exts in stored["samples"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
    with open(shard, "rb") as f:
        index: dict[str, dict[str, Member]] = {}
        for key, exts in members.items():
            for ext, (offset, size) in exts.items():
                named, label = _member(f, offset, size, f"{key}.{ext}" if ext else key, data=ext in ("cls", "json"))
                if not named:
                    return None
                index.setdefault(key, {})[ext] = (offset, size, label)
    return index


def _member(f: Any, offset: int, size: int, name: str, *, data: bool) -> tuple[bool, bytes | None]:
    """Whether the 512-byte tar header before `offset` describes a member `name` of `size` bytes, and (`data`)
    the member's bytes, read with the header in one read."""
    if offset < tarfile.BLOCKSIZE:
        return False, None
    f.seek(offset - tarfile.BLOCKSIZE)
    block = f.read(tarfile.BLOCKSIZE + (size if data else 0))
    try:
        header = tarfile.TarInfo.frombuf(block[: tarfile.BLOCKSIZE], tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False, None
    named = header.name == name and header.size == size
    return named, block[tarfile.BLOCKSIZE :] if data and named else None


def _target(shard: Path, key: str, members: dict[str, Member]) -> Target:
    """The class index (or indices) of a sample, from its .cls or .json member."""
    where = f"sample {key} of shard {shard}"
    try:
        if "cls" in members:
            return int((members["cls"][2] or b"").decode().strip())
        if "json" in members:
            meta = json.loads(members["json"][2] or b"")
            label = meta.get("labels", meta.get("label")) if isinstance(meta, dict) else None
            if isinstance(label, int):
                return label
            if isinstance(label, list) and all(isinstance(x, int) for x in label):
                return tuple(label)
    except (ValueError, UnicodeDecodeError) as err:
        raise SourceError(f"{where}: unreadable label ({err}); {_REMAKE}") from None
    raise SourceError(
        f"{where} has no label: give each sample a KEY.cls member (the class index as text) or a KEY.json "
        'member with "label" (an index) or "labels" (a list of indices)'
    )


def read_info(location: Path) -> dict[str, Any]:
    """The split's `_info.json`, checked against the `*.tar` files of the folder (one made up from them
    when the file is absent: every shard in name order, sizes from the index)."""
    tars = sorted(p.name for p in location.glob("*.tar"))
    path = location / INFO_NAME
    if not path.is_file():
        return {"filenames": tars}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        filenames = [str(f) for f in info["filenames"]]
    except (ValueError, KeyError, TypeError) as err:
        raise SourceError(f"{path} is not a shard list ({err!r}): expected a JSON object with `filenames`") from None
    outside = [f for f in filenames if Path(f).name != f or f in ("", ".", "..")]
    if outside:
        raise SourceError(
            f"{path} lists {outside[:5]}, which are not files of its folder; a split's shards are the tar files "
            f"beside its {INFO_NAME}, listed by file name only"
        )
    missing = [f for f in filenames if not (location / f).is_file()]
    unlisted = sorted(set(tars) - set(filenames))
    if missing or unlisted:
        raise SourceError(
            f"the shards of {location} and its {INFO_NAME} disagree: listed but missing {missing[:5]}, present but "
            f"not listed {unlisted[:5]}; restore the missing shards or {_REMAKE}"
        )
    return info


class ShardSource(ImageSource):
    """A split of WebDataset tar shards: samples in `_info.json`'s shard order, each shard in member order."""

    def __init__(self, root: str | Path, *, transform: Callable[[Image.Image], Any] | None = None) -> None:
        super().__init__(transform=transform)
        root = Path(root)
        info = read_info(root)
        self.origin = str(root)
        self.shard_paths = [root / name for name in info["filenames"]]
        if not self.shard_paths:
            raise SourceError(f"{root} has no shards; expected {root}/*.tar and {root}/{INFO_NAME}")
        self.samples: list[ShardSample] = []
        self.targets = []
        for number, path in enumerate(self.shard_paths):
            self._add_shard(number, path, info.get("shard_lengths"))
        if "num_samples" in info and info["num_samples"] != len(self.samples):
            raise SourceError(f"{root}/{INFO_NAME} lists {info['num_samples']} samples, the shards hold {len(self)}")
        largest = max((max(t) if isinstance(t, tuple) else t for t in self.targets if t != ()), default=-1)
        self.classes = [str(c) for c in info.get("classes", range(largest + 1))]  # else named "0", "1", ...
        if largest >= len(self.classes):
            raise SourceError(
                f"{root} has class index {largest} but its {INFO_NAME} names {len(self.classes)} classes; {_REMAKE}"
            )

    def _add_shard(self, number: int, path: Path, lengths: Sequence[int] | None) -> None:
        samples = index_shard(path)
        if lengths is not None and (number >= len(lengths) or lengths[number] != len(samples)):
            listed = lengths[number] if number < len(lengths) else "no size"
            raise SourceError(
                f"shard {path} holds {len(samples)} samples but {path.parent / INFO_NAME} lists {listed}; {_REMAKE}"
            )
        for key, members in samples.items():
            ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
            if ext is None:
                raise SourceError(
                    f"sample {key} of shard {path} has no image member (KEY.{', KEY.'.join(IMAGE_EXTENSIONS)}); "
                    f"it has: {', '.join(sorted(members))}"
                )
            offset, size, _ = members[ext]
            self.samples.append(ShardSample(number, f"{key}.{ext}", offset, size))
            self.targets.append(_target(path, key, members))

    def encoded(self, index: int) -> tuple[bytes, str]:
        """The image member's bytes as stored, and its extension."""
        sample = self.samples[index]
        with open(self.shard_paths[sample.shard], "rb") as f:
            f.seek(sample.offset)
            data = f.read(sample.size)
        return data, sample.name.rpartition(".")[2]

    def load(self, index: int) -> Image.Image:
        return read_image(io.BytesIO(self.encoded(index)[0]))

    def where(self, index: int) -> str:
        sample = self.samples[index]
        return f"{self.shard_paths[sample.shard]}:{sample.name}"

    def keep(self, indices: Sequence[int]) -> None:
        self.samples = [self.samples[i] for i in indices]
        super().keep(indices)

    def shard_groups(self) -> list[list[int]]:
        """The sample indices of each shard, in shard order: what the shard sampler deals out to the ranks."""
        groups: list[list[int]] = [[] for _ in self.shard_paths]
        for i, sample in enumerate(self.samples):
            groups[sample.shard].append(i)
        return groups
