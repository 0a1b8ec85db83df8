"""A metadata folder: images listed with their labels in `metadata.csv` or `metadata.jsonl` (the Hugging Face
`imagefolder` convention), which is what annotation tools export.

The metadata file sits in the split folder, beside the images (flat, or in subfolders). Its `file_name`
column is each image's path relative to that folder; its class column is `label` (one class per image)
or `labels` (several: a JSON list in JSONL, the form `datasets` also reads as a list; `;`-separated in
CSV, read here only: `datasets` gives that cell as one string). Other columns are ignored. The class
names are the sorted distinct label strings of the split (the same rule as a folder's sorted class
folders, so `data_splits` can check that train and val agree; and the order of `datasets`'
`class_encode_column`, which sorts the labels as text too, so a class index here is its index there).

Canonical order: single-label samples sorted by (class index, file name), which is the image folder's
order, so the same images as a folder or as a metadata folder give the same training run; multi-label
samples by file name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from PIL import Image

from inceptionnet.data.sources.base import FileSource, SourceError, Target

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
LABEL_COLUMNS = ("label", "labels")  # one class per image, several classes per image
CSV_LABELS_SEPARATOR = ";"
_COLUMNS_HELP = (
    "name the image path column `file_name` (relative to the folder of the metadata file) and the class column "
    f"`label` (one class per image) or `labels` (several: {CSV_LABELS_SEPARATOR!r}-separated in CSV, a JSON list "
    "in JSONL)"
)


@dataclass(frozen=True)
class _Row:
    """One image of the metadata file: where it is listed, its path, its label strings."""

    line: int  # line of the metadata file, 1-based (a CSV's header is line 1)
    file_name: str
    labels: tuple[str, ...]


def is_metadata_folder(location: str | Path) -> bool:
    """Whether `location` holds a metadata file (metadata.csv or metadata.jsonl)."""
    return any((Path(location) / name).is_file() for name in METADATA_FILES)


class MetadataSource(FileSource):
    """A split folder whose `metadata.csv` / `metadata.jsonl` lists its images and their labels.

    Every row is checked when the split is opened (the file exists, is listed once, has a label), so a
    bad row stops a run before training with the file, the line and the fix; an image that exists but
    cannot be decoded is skipped and counted while loading, as in a folder.
    """

    def __init__(self, root: str | Path, *, transform: Callable[[Image.Image], Any] | None = None) -> None:
        super().__init__(transform=transform)
        root = Path(root)
        metadata = _metadata_file(root)
        column, rows = _read_csv(metadata) if metadata.suffix == ".csv" else _read_jsonl(metadata)
        if not rows:
            raise SourceError(f"{metadata} lists no images; add one row per image ({_COLUMNS_HELP})")
        _check_files(root, metadata, rows)
        self.origin = str(root)
        self.metadata = metadata
        self.classes = sorted({label for row in rows for label in row.labels})
        index = {name: i for i, name in enumerate(self.classes)}
        samples: list[tuple[Target, _Row]]
        if column == "labels":
            samples = [(tuple(sorted({index[label] for label in row.labels})), row) for row in rows]
            samples.sort(key=lambda s: s[1].file_name)
        else:
            samples = sorted(((index[row.labels[0]], row) for row in rows), key=lambda s: (s[0], s[1].file_name))
        self.targets = [target for target, _ in samples]
        self.paths = [root / row.file_name for _, row in samples]
        self.lines = [row.line for _, row in samples]

    def where(self, index: int) -> str:
        return f"{self.paths[index]} ({self.metadata} line {self.lines[index]})"

    def keep(self, indices: Sequence[int]) -> None:
        self.lines = [self.lines[i] for i in indices]
        super().keep(indices)


def _metadata_file(root: Path) -> Path:
    """The one metadata file of `root`."""
    found = [root / name for name in METADATA_FILES if (root / name).is_file()]
    if not found:
        raise SourceError(f"{root} holds no {' or '.join(METADATA_FILES)}; {_COLUMNS_HELP}")
    if len(found) > 1:
        raise SourceError(f"{root} holds both {' and '.join(METADATA_FILES)}; keep one of them")
    return found[0]


def _label_column(metadata: Path, columns: Sequence[str]) -> str:
    """Which of LABEL_COLUMNS the metadata file uses, after checking that it has a `file_name` column."""
    found = ", ".join(columns) or "none"
    if "file_name" not in columns:
        raise SourceError(f"{metadata} has no `file_name` column (columns found: {found}); {_COLUMNS_HELP}")
    present = [c for c in LABEL_COLUMNS if c in columns]
    if not present:
        raise SourceError(f"{metadata} has an unknown label column (columns found: {found}); {_COLUMNS_HELP}")
    if len(present) > 1:
        raise SourceError(f"{metadata} has both a `label` and a `labels` column; keep the one that holds the classes")
    return present[0]


def _read_csv(metadata: Path) -> tuple[str, list[_Row]]:
    # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark, which would rename `file_name`
    with metadata.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
            column = _label_column(metadata, reader.fieldnames)
            rows = []
            for record in reader:
                value = record.get(column) or ""
                labels = value.split(CSV_LABELS_SEPARATOR) if column == "labels" else [value]
                rows.append(_row(metadata, reader.line_num, record.get("file_name"), labels))
        except csv.Error as err:  # e.g. a cell over csv's limit of 131,072 characters
            raise SourceError(
                f"{metadata} line {reader.line_num + 1} cannot be read as CSV ({err}); fix that line (a cell holds a "
                "file name and labels, a few hundred characters at most) or remove it"
            ) from None
    return column, rows


def _read_jsonl(metadata: Path) -> tuple[str, list[_Row]]:
    column = ""
    rows = []
    for line, record in _json_objects(metadata):
        column = column or _label_column(metadata, list(record))  # the first object names the columns
        value = record.get(column)
        if column == "labels" and not isinstance(value, list):
            raise SourceError(
                f"{metadata} line {line}: `labels` is {json.dumps(value)}, not a JSON list; "
                'write the classes of the image as a list, e.g. "labels": ["cat", "indoor"]'
            )
        if column == "label" and isinstance(value, (list, dict)):
            raise SourceError(
                f"{metadata} line {line}: `label` is {json.dumps(value)}, not one class; several classes of an "
                'image go in a `labels` column, e.g. "labels": ["cat", "indoor"] (rename the column in every row)'
            )
        labels = value if column == "labels" else [value]
        rows.append(_row(metadata, line, record.get("file_name"), ["" if v is None else str(v) for v in labels]))
    return column, rows


def _json_objects(metadata: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file."""
    with metadata.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise SourceError(
                    f"{metadata} line {line} is not valid JSON ({err.msg}, column {err.colno}); write one JSON "
                    'object per line, e.g. {"file_name": "images/0001.jpg", "label": "cat"}'
                ) from None
            if not isinstance(record, dict):
                raise SourceError(
                    f"{metadata} line {line} is a JSON {type(record).__name__}, not an object; write one object "
                    'per line, e.g. {"file_name": "images/0001.jpg", "label": "cat"}'
                )
            yield line, record


def _row(metadata: Path, line: int, file_name: Any, labels: Sequence[str]) -> _Row:
    """One checked row: a file name, and at least one non-empty label (empty parts of a list are dropped)."""
    if not isinstance(file_name, str) or not file_name.strip():
        raise SourceError(
            f"{metadata} line {line} has no file_name; give every row the path of its image, relative to "
            f"{metadata.parent}"
        )
    kept = tuple(label.strip() for label in labels if label.strip())
    if not kept:
        raise SourceError(
            f"{metadata} line {line} ({file_name}) has an empty label; give the image its class, or remove the row"
        )
    name = file_name.strip()
    posix, windows = PurePosixPath(name), PureWindowsPath(name)  # a `..\\` climbs out where Windows reads it
    if posix.is_absolute() or windows.drive or windows.root or ".." in posix.parts or ".." in windows.parts:
        raise SourceError(
            f"{metadata} line {line} names {name!r}, outside the folder of the metadata file; a file_name is a "
            f"path inside {metadata.parent} (as Hugging Face's imagefolder reads it): move or link the images into "
            "that folder and name them relative to it"
        )
    return _Row(line, posix.as_posix(), kept)


def _check_files(root: Path, metadata: Path, rows: Sequence[_Row]) -> None:
    """Every row names an existing file, and no file is listed twice."""
    first_line: dict[str, int] = {}
    for row in rows:
        if row.file_name in first_line:
            raise SourceError(
                f"{metadata} lines {first_line[row.file_name]} and {row.line} both list {row.file_name}; keep one "
                "row per image (several classes of one image go in one row, in a `labels` column)"
            )
        first_line[row.file_name] = row.line
        if not (root / row.file_name).is_file():
            raise SourceError(
                f"{metadata} line {row.line} lists {row.file_name}, which is not a file in {root}; fix the path "
                "(relative to the folder of the metadata file) or remove the row"
            )
