"""Our data read by other people's readers: timm's WebDataset reader takes the shards `inceptionnet shards`
writes (the same samples in the same order, decoded to the same pixels, the same labels), and the `datasets`
library's imagefolder takes our metadata folders (the same labels, class order and splits)."""

from __future__ import annotations

import csv
import gc
import io
import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inceptionnet.cli import main
from inceptionnet.data import DEMO_DATA, open_split, read_image
from inceptionnet.data.sources import ImageSource

pytest.importorskip("webdataset")
timm_data = pytest.importorskip("timm.data")
datasets = pytest.importorskip("datasets")

pytestmark = pytest.mark.usefixtures("one_thread")

SPLITS = {"train": "train", "val": "validation"}  # ours -> the split name `datasets` gives the same folder
# Several labels per image, with names that CSV or YAML would misread if written unquoted.
MULTI = [["dog", "cat"], ["cat"], ["outdoor", "dog"], ["sea, calm", "cat"], ["10"], ["9", "dog"]]


def _demo_images(count: int) -> list[Path]:
    """`count` of the built-in demo's JPEGs, from several classes."""
    return sorted((DEMO_DATA / "train").glob("*/*.jpg"))[::50][:count]


def _sideways(path: Path) -> Path:
    """A 40x24 JPEG whose EXIF orientation tag (6: turn 90 degrees clockwise) makes it a 24x40 picture."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(_demo_images(1)[0]).resize((40, 24)).save(path, exif=exif.tobytes())
    return path


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _ours(source: ImageSource) -> list[tuple[np.ndarray, object]]:
    """Every sample of `source` as (RGB pixels, target), targets of several labels as lists (timm's form)."""
    targets = [list(t) if isinstance(t, tuple) else t for t in source.targets]
    return [(_pixels(source.load(i)), targets[i]) for i in range(len(source))]


@contextmanager
def _their_open_files() -> Iterator[None]:
    """Files the other readers leave open for the GC to close (webdataset's tars, pandas' metadata.csv under
    `datasets`) closed here, without the ResourceWarning that the tests' warning filter would make an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()


def _timm(root: Path, split: str, **options: object) -> list[tuple[np.ndarray, object]]:
    """timm's `create_dataset("wds/...")` of `root`'s split, read in order (not training: no shuffling)."""
    with _their_open_files():
        dataset = timm_data.create_dataset("wds/ours", root=str(root), split=split, **options)
        samples = [(_pixels(image), target) for image, target in dataset]
        del dataset
    return samples


def _same(got: list[tuple[np.ndarray, object]], expected: list[tuple[np.ndarray, object]]) -> None:
    assert len(got) == len(expected) > 0
    for (image, target), (want_image, want_target) in zip(got, expected, strict=True):
        assert target == want_target
        assert image.shape == want_image.shape and np.array_equal(image, want_image)


def _write_metadata(split: Path, rows: list[dict[str, object]], kind: str) -> None:
    """`rows` as split/metadata.jsonl, or as split/metadata.csv (a `labels` list joined by `;`)."""
    if kind == "jsonl":
        (split / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return
    cells = [{k: ";".join(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows]
    with (split / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(cells[0]))
        writer.writeheader()
        writer.writerows(cells)


def _metadata_folder(root: Path, labels: list[object], *, kind: str, val_name: str = "val") -> Path:
    """root/train and root/<val_name>: the demo images (half of them in a subfolder) listed in a metadata file
    with `labels` (a list of names per image: a `labels` column; else a `label` column), rows in reverse."""
    column = "labels" if isinstance(labels[0], list) else "label"
    for split in ("train", val_name):
        rows = []
        for n, (image, label) in enumerate(zip(_demo_images(len(labels)), labels, strict=True)):
            name = f"sub/{n}.jpg" if n % 2 else f"{n}.jpg"
            (root / split / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / split / name)
            rows.append({"file_name": name, column: label, "note": "ignored"})
        _write_metadata(root / split, rows[::-1], kind)
    return root


# -- timm reads our shards -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, make_image_folder: Callable[..., Path]) -> Path:
    """3 classes of 4 training and 2 validation JPEGs, plus a BMP and a photo stored sideways in each split."""
    root = make_image_folder(tmp_path_factory.mktemp("interop") / "folder", classes=3, train=4, val=2)
    for split in ("train", "val"):
        first, second, _ = sorted((root / split).iterdir())
        _sideways(first / "sideways.jpg")
        Image.open(next(second.glob("*.jpg"))).save(second / "bitmap.bmp")
    return root


@pytest.fixture(scope="module")
def shards(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("interop-shards") / "shards"
    assert main(["shards", str(folder), str(dst), "--shard-size", "3"]) == 0
    return dst


@pytest.mark.parametrize("split", ["train", "val", "validation"])
def test_timm_reads_our_shards_as_we_do(folder: Path, shards: Path, split: str) -> None:
    ours = open_split(shards, "train" if split == "train" else "val")
    _same(_timm(shards, split), _ours(ours))  # "validation": timm's default split name, the val shards again
    source = open_split(folder, "train" if split == "train" else "val")
    assert sorted(ours.targets) == sorted(source.targets) and ours.classes == source.classes


def test_a_photo_stored_sideways_reaches_timm_upright(folder: Path, shards: Path) -> None:
    ours = open_split(shards, "val")
    (index,) = [i for i, t in enumerate(ours.targets) if ours.load(i).size == (24, 40)]
    image, ext = ours.encoded(index)
    assert ext == "png" and "exif" not in Image.open(io.BytesIO(image)).info  # upright pixels, no tag to apply
    upright = _pixels(read_image(next(folder.glob("val/*/sideways.jpg"))))
    assert np.array_equal(_timm(shards, "val")[index][0], upright)


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_timm_reads_multi_label_shards_with_target_key_labels(tmp_path: Path, kind: str) -> None:
    source = _metadata_folder(tmp_path / "metadata", MULTI, kind=kind)
    dst = tmp_path / "shards"
    assert main(["shards", str(source), str(dst), "--shard-size", "4"]) == 0
    for split in ("train", "val"):
        ours = open_split(dst, split)
        assert ours.classes == open_split(source, split).classes == ["10", "9", "cat", "dog", "outdoor", "sea, calm"]
        _same(_timm(dst, split, target_key="labels"), _ours(ours))
        names = sorted(sorted(ours.classes[i] for i in t) for t in ours.targets)  # type: ignore[union-attr]
        assert names == sorted(sorted(labels) for labels in MULTI)


# -- `datasets` reads our metadata folders ---------------------------------------------------------------------


def _hf(data: Path, cache: Path) -> dict[str, object]:
    """`datasets.load_dataset("imagefolder", data_dir=data)`, each split's images as file paths."""
    with _their_open_files():
        loaded = datasets.load_dataset("imagefolder", data_dir=str(data), cache_dir=str(cache))
    return {name: split.cast_column("image", datasets.Image(decode=False)) for name, split in loaded.items()}


def _text(feature: object) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def _by_file(folder: Path, paths: list[str], values: list[object]) -> dict[str, object]:
    return {Path(p).relative_to(folder).as_posix(): v for p, v in zip(paths, values, strict=True)}


def _our_labels(source: ImageSource) -> dict[str, object]:
    """file name -> label name (single-label) or sorted label names (several)."""
    names = [
        sorted(source.classes[i] for i in t) if isinstance(t, tuple) else source.classes[t] for t in source.targets
    ]
    return _by_file(Path(source.origin), [str(p) for p in source.paths], names)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "labels"),
    [
        ("csv", ["cat", "dog", "10", "9", "cat", "dog"]),  # text: `datasets` gives strings
        ("csv", [0, 1, 10, 9, 2, 1]),  # numbers: `datasets` gives int64, its class_encode_column sorts them as text
        ("jsonl", ["cat", "dog", "10", "9", "sea, calm", "dog"]),
    ],
)
def test_datasets_gives_our_labels_and_class_indices(tmp_path: Path, kind: str, labels: list[object]) -> None:
    data = _metadata_folder(tmp_path / "data", labels, kind=kind)
    hf = _hf(data, tmp_path / "cache")
    assert set(hf) == set(SPLITS.values())
    for ours_name, hf_name in SPLITS.items():
        ours, split = open_split(data, ours_name), hf[hf_name]
        paths = [cell["path"] for cell in split["image"]]
        assert _by_file(Path(ours.origin), paths, [str(v) for v in split["label"]]) == _our_labels(ours)
        encoded = split.class_encode_column("label")
        assert encoded.features["label"].names == ours.classes
        indices = _by_file(Path(ours.origin), paths, encoded["label"])
        assert indices == _by_file(Path(ours.origin), [str(p) for p in ours.paths], ours.targets)


def test_datasets_reads_our_multi_label_jsonl_as_lists(tmp_path: Path) -> None:
    data = _metadata_folder(tmp_path / "data", MULTI, kind="jsonl")
    hf = _hf(data, tmp_path / "cache")
    for ours_name, hf_name in SPLITS.items():
        ours, split = open_split(data, ours_name), hf[hf_name]
        assert isinstance(split.features["labels"], datasets.List) and _text(split.features["labels"].feature)
        paths = [cell["path"] for cell in split["image"]]
        assert _by_file(Path(ours.origin), paths, [sorted(v) for v in split["labels"]]) == _our_labels(ours)


def test_the_csv_labels_separator_is_ours_alone(tmp_path: Path) -> None:
    """A `;`-separated CSV cell gives the labels of the JSONL list here; `datasets` reads it as one string."""
    csv_data = _metadata_folder(tmp_path / "csv", MULTI, kind="csv")
    jsonl_data = _metadata_folder(tmp_path / "jsonl", MULTI, kind="jsonl")
    ours, listed = open_split(csv_data, "train"), open_split(jsonl_data, "train")
    assert (ours.classes, ours.targets) == (listed.classes, listed.targets)
    split = _hf(csv_data, tmp_path / "cache")["train"]
    assert _text(split.features["labels"])  # one string per image, not a list
    paths = [cell["path"] for cell in split["image"]]
    assert _by_file(Path(ours.origin), paths, [sorted(v.split(";")) for v in split["labels"]]) == _our_labels(ours)


@pytest.mark.parametrize("val_name", ["validation", "valid", "dev"])
def test_every_validation_folder_name_of_datasets_is_our_val_split(tmp_path: Path, val_name: str) -> None:
    data = _metadata_folder(tmp_path / "data", ["cat", "dog"] * 2, kind="jsonl", val_name=val_name)
    assert set(_hf(data, tmp_path / "cache")) == {"train", "validation"}
    assert Path(open_split(data, "val").origin) == data / val_name


def test_a_metadata_parquet_folder_is_read_through_datasets(tmp_path: Path) -> None:
    """`datasets` reads metadata.parquet too; `--data` takes such a folder through `datasets` (the hf extra)."""
    arrow, parquet = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    labels = ["cat", "dog", "10", "9", "sea, calm", "dog"]
    jsonl = _metadata_folder(tmp_path / "jsonl", labels, kind="jsonl")
    data = shutil.copytree(jsonl, tmp_path / "parquet")
    for split in ("train", "val"):
        rows = [json.loads(line) for line in (data / split / "metadata.jsonl").read_text().splitlines()]
        parquet.write_table(arrow.Table.from_pylist(rows), data / split / "metadata.parquet")
        (data / split / "metadata.jsonl").unlink()
    for split in ("train", "val"):
        ours, expected = open_split(data, split), open_split(jsonl, split)
        assert ours.classes == expected.classes
        assert sorted(ours.targets) == sorted(expected.targets)  # type: ignore[type-var]
