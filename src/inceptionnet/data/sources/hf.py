"""Hugging Face datasets: `hf:ORG/NAME` from the Hub, or a local copy (a `save_to_disk` folder, parquet files).

The splits: our "train" is the dataset's `train`; our "val" is its `validation`, else `val`, else
`test` (as an image folder's val/, else test/). Columns are read from the dataset's features: the
image is the column of type `datasets.Image`; the label a `ClassLabel` column (its names are the
class names), or a list of `ClassLabel` (several labels per image: tuple targets). A plain string
label column is read too, its sorted distinct values being the class names (as the metadata
folder's labels); integers without names are refused, since nothing says what the classes are.
`image_column` / `label_column` choose the columns where the features leave a choice.

Images are decoded one at a time in `load(i)`, from the row's encoded bytes, by `read_image`; the
samples keep the dataset's own row order. A row whose image is a `path` (no bytes) is read only when
the path lies inside the dataset's own folder (or, for `hf:` datasets, the caches `datasets` extracts
into): a dataset from elsewhere must not make training read, or `inceptionnet shards` copy, any file
of this machine; such a dataset is refused when opened, naming the row. The arrow-backed dataset is
memory-mapped, so it pickles by file reference into DataLoader workers. `datasets` is an optional
dependency (`inceptionnet[hf]`),
imported when such a dataset is opened.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from inceptionnet.data.images import UNREADABLE, open_image, read_image, read_image_bytes
from inceptionnet.data.sources.base import ImageSource, SourceError, Target
from inceptionnet.extras import require

HUB_PREFIX = "hf:"
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}  # formats a shard keeps as they are (PIL names)
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val", "test")}  # ours -> the dataset's, first found
_IMAGE_FIX = "choose the image column with --image-column NAME (image_column=)"
_LABEL_FIX = "choose the label column with --label-column NAME (label_column=)"


def is_hf_dataset(data: str | Path) -> bool:
    """Whether `data` names a Hugging Face dataset: `hf:ORG/NAME`, a folder written by `save_to_disk`, or a
    folder of parquet files (DATA/*.parquet, DATA/<split>/*.parquet)."""
    if str(data).startswith(HUB_PREFIX):
        return True
    root = Path(data)
    return _saved(root) or any(root.glob("*.parquet")) or any(root.glob("*/*.parquet"))


def _saved(root: Path) -> bool:
    """Whether `root` was written by `save_to_disk`: a DatasetDict (dataset_dict.json) or one Dataset (state.json)."""
    return (root / "dataset_dict.json").is_file() or (root / "state.json").is_file()


class HFSource(ImageSource):
    """One split of a Hugging Face dataset, in its row order; `where(i)` names the dataset and the row."""

    def __init__(
        self,
        dataset: Any,
        *,
        origin: str,
        roots: Sequence[Path] = (),
        image_column: str | None = None,
        label_column: str | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        import datasets

        super().__init__(transform=transform)
        self.origin = origin
        self.image_column = _image_column(dataset.features, image_column, origin)
        label = _label_column(dataset.features, label_column, origin)
        values = list(dataset.select_columns([label])[label])
        self.classes, self.targets = _targets(values, dataset.features[label], f"{origin}, column {label!r}")
        # Encoded bytes per row (decode=False): decoding happens in load(), where a corrupt image is skipped.
        images = dataset.select_columns([self.image_column])
        self.images = images.cast_column(self.image_column, datasets.Image(decode=False))
        _check_paths(self.images, self.image_column, roots, origin)
        self.folder = roots[0] if roots else None  # where a relative image path starts
        self.rows = list(range(len(dataset)))

    def load(self, index: int) -> Image.Image:
        cell = self.images[self.rows[index]][self.image_column]
        if cell is not None and cell.get("bytes") is not None:
            return read_image_bytes(cell["bytes"])
        if cell is not None and cell.get("path"):
            return read_image(self.file(cell["path"]))
        raise ValueError(f"{self.where(index)} has no image")  # one of UNREADABLE: skipped and counted

    def encoded(self, index: int) -> tuple[bytes, str] | None:
        """The row's image bytes as stored, with the extension of the format they hold (None: not JPEG, PNG or
        WebP, or unreadable: `inceptionnet shards` then decodes and re-encodes it, or skips it)."""
        cell = self.images[self.rows[index]][self.image_column]
        if cell is not None and cell.get("path") and not cell.get("bytes"):
            path = self.file(cell["path"])
            return path.read_bytes(), path.suffix[1:].lower()
        if cell is None or cell.get("bytes") is None:
            return None
        try:
            with open_image(io.BytesIO(cell["bytes"])) as image:  # reads the header only
                ext = _EXTENSIONS.get(image.format or "")
        except UNREADABLE:
            return None
        return (cell["bytes"], ext) if ext is not None else None

    def file(self, path: str) -> Path:
        """The file a row's image path names: relative to the dataset's folder (checked inside it when opened)."""
        return self.folder / path if self.folder is not None else Path(path)

    def where(self, index: int) -> str:
        return f"{self.origin}, row {self.rows[index]}"

    def keep(self, indices: Sequence[int]) -> None:
        self.rows = [self.rows[i] for i in indices]
        super().keep(indices)


def open_hf_split(
    data: str | Path,
    split: str | None,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
) -> HFSource:
    """Split `split` ("train", "val", or None: the validation split, or the dataset when it is one split)."""
    if split is not None and split not in SPLIT_NAMES:
        raise SourceError(f"unknown split {split!r}; choose one of: {', '.join(SPLIT_NAMES)}")
    dataset, origin = _pick_split(_load(data), split, str(data))
    return HFSource(
        dataset,
        origin=origin,
        roots=_roots(data),
        image_column=image_column,
        label_column=label_column,
        transform=transform,
    )


def _roots(data: str | Path) -> tuple[Path, ...]:
    """The folders a row's image `path` may name: a local dataset's own folder; for a Hub dataset, the caches
    where `datasets` and `huggingface_hub` put the files they download and extract."""
    if not str(data).startswith(HUB_PREFIX):
        return (Path(data).resolve(),)
    import datasets
    from huggingface_hub import constants

    return Path(datasets.config.HF_DATASETS_CACHE).resolve(), Path(constants.HF_HUB_CACHE).resolve()


def _check_paths(images: Any, column: str, roots: Sequence[Path], origin: str) -> None:
    """SourceError naming the first row whose image is a path (its bytes absent) outside every one of `roots`
    (links resolved): an absolute path, a `..`, or a link out of the dataset's folder."""
    import pyarrow.compute as pc

    cells = images.data.column(column)  # the arrow storage of datasets.Image: struct<bytes, path>
    by_path = pc.and_(pc.is_null(pc.struct_field(cells, "bytes")), pc.is_valid(pc.struct_field(cells, "path")))
    rows = pc.indices_nonzero(by_path).to_pylist()
    paths = pc.filter(pc.struct_field(cells, "path"), by_path).to_pylist()
    for row, path in zip(rows, paths, strict=True):
        real = (roots[0] / path if roots else Path(path)).resolve()  # a relative path: from the dataset's folder
        if not any(real.is_relative_to(root) for root in roots):
            raise SourceError(
                f"{origin}, row {row}: its image is the file {path!r}, outside the dataset's folder "
                f"({', '.join(map(str, roots))}); a dataset may only name its own files: embed the images' bytes in "
                "the dataset (datasets.Image() columns of bytes), or copy the files into its folder"
            )


def _load(data: str | Path) -> Any:
    """The Dataset or DatasetDict `data` names (the Hub through `load_dataset`, local copies as `datasets`
    reads them: `load_from_disk` for a save_to_disk folder, `load_dataset` for parquet files)."""
    datasets = require("datasets", extra="hf", purpose=f"the Hugging Face dataset {data}")
    text = str(data)
    try:
        if text.startswith(HUB_PREFIX):
            return datasets.load_dataset(text[len(HUB_PREFIX) :])
        if _saved(Path(text)):
            return datasets.load_from_disk(text)
        return datasets.load_dataset(text)
    except (OSError, ValueError) as err:  # not found, no network, files datasets cannot read
        raise SourceError(f"cannot read the Hugging Face dataset {text}: {err}") from None


def _pick_split(loaded: Any, split: str | None, origin: str) -> tuple[Any, str]:
    """The dataset of our split `split` in `loaded`, and its name for messages."""
    if not hasattr(loaded, "keys"):  # one Dataset: a split by itself
        if split is None:
            return loaded, origin
        raise SourceError(
            f"{origin} is one split, not a dataset with train and validation splits; save the DatasetDict "
            "(DatasetDict(train=..., validation=...).save_to_disk(DIR)), or pass this split where one is taken"
        )
    names = SPLIT_NAMES["val" if split is None else split]
    found = next((name for name in names if name in loaded), None)
    if found is None:
        raise SourceError(
            f"{origin} has no {' or '.join(names)} split; its splits: {', '.join(loaded.keys())}; "
            f"name the split {names[0]!r}"
        )
    return loaded[found], f"{origin} [{found}]"


def _describe(features: Any) -> str:
    return ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())


def _check_column(features: Any, column: str, origin: str) -> None:
    if column not in features:
        raise SourceError(f"{origin} has no column {column!r}; its columns: {_describe(features)}")


def _image_column(features: Any, chosen: str | None, origin: str) -> str:
    """`chosen`, which must be of type datasets.Image, or the one such column."""
    import datasets

    if chosen is not None:
        _check_column(features, chosen, origin)
        if not isinstance(features[chosen], datasets.Image):
            raise SourceError(
                f"{origin}: column {chosen!r} is {features[chosen]!r}, not an image; cast it first "
                f"(dataset.cast_column({chosen!r}, datasets.Image())) or choose the image column"
            )
        return chosen
    found = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if len(found) != 1:
        what = f"several image columns ({', '.join(found)})" if found else "no column of type Image"
        raise SourceError(f"{origin} has {what}; its columns: {_describe(features)}; {_IMAGE_FIX}")
    return found[0]


def _label_column(features: Any, chosen: str | None, origin: str) -> str:
    """`chosen`, or the one ClassLabel (or list of ClassLabel) column, else a column named label / labels."""
    import datasets

    if chosen is not None:
        _check_column(features, chosen, origin)
        return chosen
    labels = [name for name, feature in features.items() if isinstance(_label_kind(feature), datasets.ClassLabel)]
    if len(labels) > 1:
        raise SourceError(f"{origin} has several ClassLabel columns ({', '.join(labels)}); {_LABEL_FIX}")
    found = labels or [name for name in ("label", "labels") if name in features]
    if not found:
        raise SourceError(f"{origin} has no ClassLabel column; its columns: {_describe(features)}; {_LABEL_FIX}")
    return found[0]


def _label_kind(feature: Any) -> Any:
    """The feature of each label: a list column's item feature (List / Sequence), else the column's own."""
    return getattr(feature, "feature", feature)


def _targets(values: list[Any], feature: Any, origin: str) -> tuple[list[str], list[Target]]:
    """The class names and the targets of a label column's `values`: a ClassLabel's names and indices, or
    the sorted distinct strings of a string column; a list of either gives tuple targets (several labels)."""
    import datasets

    several = hasattr(feature, "feature")
    kind = _label_kind(feature)
    if isinstance(kind, datasets.ClassLabel):
        classes = list(kind.names)
        index = {i: i for i in range(len(classes))}
    elif isinstance(kind, datasets.Value) and kind.dtype in ("string", "large_string"):
        classes = sorted({v for row in values for v in (row if several else [row]) if v is not None})
        index = {name: i for i, name in enumerate(classes)}
    else:
        raise SourceError(
            f"{origin} is {feature!r}: class names are needed; make it a ClassLabel "
            "(dataset.cast_column(column, datasets.ClassLabel(names=[...]))) or a column of class names (strings)"
        )

    def target(row: int, value: Any) -> int:
        if value not in index:
            raise SourceError(
                f"{origin}, row {row}: label {value!r} is outside the {len(classes)} classes "
                f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}); "
                "correct the label or the class names"
            )
        return index[value]

    if several:
        return classes, [tuple(target(row, v) for v in value or ()) for row, value in enumerate(values)]
    return classes, [target(row, value) for row, value in enumerate(values)]
