"""Hugging Face datasets as a data source: local copies (save_to_disk, parquet) read as the image folder they
were made from, the columns found from the features or chosen, each bad dataset refused by name, several
labels per image carried but not trained, corrupt image bytes skipped and counted, and `hf:ORG/NAME`
through `datasets.load_dataset` (without the network)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from torchvision.transforms.v2 import functional as F

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")

from inceptionnet.cli import main  # noqa: E402
from inceptionnet.data import SourceError, collate_skipping_bad, data_splits, open_split  # noqa: E402
from inceptionnet.data.images import read_image  # noqa: E402
from inceptionnet.data.sources import FolderSource, source_kind, split_classes  # noqa: E402
from inceptionnet.training.loop import train  # noqa: E402


@pytest.fixture(autouse=True)
def _local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_dataset's arrow cache of the parquet copies in the test's folder, not the user's."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _split(folder: Path, **columns: list) -> datasets.Dataset:
    """An image folder's split as a Dataset: its images' bytes and ClassLabel labels, in the folder's order."""
    source = FolderSource(folder)
    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=source.classes)}
    rows = {"image": [{"bytes": p.read_bytes(), "path": None} for p in source.paths], "label": source.targets}
    for name, values in columns.items():
        features[name] = datasets.Value("string") if isinstance(values[0], str) else datasets.Value("int64")
        rows[name] = values
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features))


@pytest.fixture
def folder(tmp_path: Path, make_image_folder: Callable[..., Path]) -> Path:
    return make_image_folder(tmp_path / "folder", classes=2, train=3, val=2)


@pytest.fixture
def saved(folder: Path, tmp_path: Path) -> Path:
    """The folder as a DatasetDict (train, validation) written by save_to_disk."""
    splits = datasets.DatasetDict(train=_split(folder / "train"), validation=_split(folder / "val"))
    splits.save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def test_save_to_disk_and_parquet_copies_read_as_the_folder(folder: Path, saved: Path, tmp_path: Path) -> None:
    by_dir, by_name = tmp_path / "by_dir", tmp_path / "by_name"
    for split, ours in (("train", "train"), ("val", "val")):  # DATA/<split>/*.parquet and DATA/<split>.parquet
        (by_dir / split).mkdir(parents=True)
        _split(folder / ours).to_parquet(str(by_dir / split / "part-0.parquet"))
        _split(folder / ours).to_parquet(str(by_name / f"{'validation' if split == 'val' else split}.parquet"))
    for data in (saved, by_dir, by_name):
        assert source_kind(data) == "hf"
        assert split_classes(data) == FolderSource(folder / "train").classes
        for split in ("train", "val"):
            expected, source = FolderSource(folder / split), open_split(data, split)
            assert (source.classes, source.targets) == (expected.classes, expected.targets), (data, split)
            assert np.array_equal(np.asarray(source.load(1)), np.asarray(read_image(expected.paths[1])))
    assert source_kind(folder) == "folder"
    one = open_split(saved / "validation")  # one saved split, as eval --data takes it
    assert one.targets == FolderSource(folder / "val").targets
    assert "validation" in open_split(saved).origin  # a DatasetDict without a split named: its validation split
    copy = pickle.loads(pickle.dumps(open_split(saved, "train")))  # as DataLoader workers receive it
    assert copy.load(0).size == open_split(saved, "train").load(0).size


def test_a_tiny_training_run_on_a_saved_dataset(saved: Path, tmp_path: Path, make_train_config, one_thread) -> None:
    result = train(make_train_config(saved, tmp_path / "run", epochs=1))
    assert (result.epoch, result.step) == (1, 2)


def test_columns_are_chosen_by_option_and_string_labels_give_sorted_names(folder: Path) -> None:
    names = ["zebra" if t else "ant" for t in FolderSource(folder / "train").targets]
    data = _split(folder / "train", animal=names)
    source = open_split(_save(data, folder.parent / "strings"), label_column="animal")
    assert source.classes == ["ant", "zebra"]
    assert source.targets == [["ant", "zebra"].index(n) for n in names]
    assert open_split(folder.parent / "strings", image_column="image").targets == FolderSource(folder / "train").targets


def _save(dataset: datasets.Dataset, path: Path) -> Path:
    dataset.save_to_disk(str(path))
    return path


def _bytes_only(dataset: datasets.Dataset) -> datasets.Dataset:
    """`dataset` with its images as a plain binary column: no column of type Image."""
    features = datasets.Features({"picture": datasets.Value("binary"), "label": dataset.features["label"]})
    return datasets.Dataset.from_dict({"picture": [b"x"] * len(dataset), "label": dataset["label"]}, features=features)


def test_bad_datasets_are_refused_by_name(folder: Path, tmp_path: Path) -> None:
    train = _split(folder / "train")
    encoded = train.cast_column("image", datasets.Image(decode=False))
    cases = [
        (_bytes_only(train), {}, r"no column of type Image; its columns: picture \(Value\), label \(ClassLabel\)"),
        (train.add_column("copy", list(encoded["image"]), feature=datasets.Image()), {}, r"several image columns"),
        (train, {"label_column": "nope"}, r"has no column 'nope'; its columns: image \(Image\), label"),
        (train, {"image_column": "label"}, r"column 'label' is ClassLabel.*not an image; cast it"),
        (_split(folder / "train", count=[1] * 6).remove_columns("label"), {"label_column": "count"}, r"make it a"),
        (
            train.add_column("other", train["label"], feature=train.features["label"]),
            {},
            r"several ClassLabel columns \(label, other\); choose the label column with --label-column",
        ),
        (
            train.map(lambda row, i: {"label": -1 if i == 4 else row["label"]}, with_indices=True),
            {},
            r"row 4: label -1",
        ),
    ]
    for i, (dataset, columns, message) in enumerate(cases):
        with pytest.raises(SourceError, match=message):
            open_split(_save(dataset, tmp_path / str(i)), **columns)
    only_train = _save(datasets.DatasetDict(train=train, holdout=train), tmp_path / "splits")
    with pytest.raises(SourceError, match=r"no validation or val or test split; its splits: train, holdout"):
        open_split(only_train, "val")
    with pytest.raises(SourceError, match="columns apply to Hugging Face datasets"):
        open_split(folder / "train", label_column="label")


def test_several_labels_per_image_are_read_and_opened_for_training(folder: Path, tmp_path: Path) -> None:
    train = _split(folder / "train")
    tags = datasets.List(datasets.ClassLabel(names=["indoor", "outdoor", "animal"]))
    rows = [[0, 2], [1], [], [2], [0, 1], [1, 2]]
    labelled = train.remove_columns("label").add_column("tags", rows, feature=tags)
    data = _save(datasets.DatasetDict(train=labelled, validation=labelled), tmp_path / "tags")
    source = open_split(data, "train")
    assert source.classes == ["indoor", "outdoor", "animal"]
    assert source.targets == [tuple(r) for r in rows] and source.multi_label
    train_split, _ = data_splits(data, train_transform=lambda im: im, val_transform=lambda im: im)
    assert train_split.multi_label


def test_corrupt_image_bytes_are_skipped_and_counted(folder: Path, tmp_path: Path) -> None:
    train = _split(folder / "train")
    bad = train.cast_column("image", datasets.Image(decode=False)).map(
        lambda row, i: {"image": {"bytes": b"\xff\xd8 not a jpeg", "path": None} if i == 2 else row["image"]},
        with_indices=True,
    )
    source = open_split(_save(bad.cast_column("image", datasets.Image()), tmp_path / "bad"), transform=F.pil_to_tensor)
    assert source[2] is None and "row 2" in source.where(2)
    batch = collate_skipping_bad([source[i] for i in range(len(source))])
    assert (batch.skipped, batch.images.shape[0]) == (1, len(source) - 1)


def test_hub_names_go_to_load_dataset(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    hub = datasets.DatasetDict(train=_split(folder / "train"), val=_split(folder / "val"))
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: calls.append(name) or hub)
    train, val = data_splits("hf:org/name", train_transform=None, val_transform=None)
    assert calls == ["org/name", "org/name"]
    assert val.origin == "hf:org/name [val]" and val.targets == FolderSource(folder / "val").targets
    assert train.classes == FolderSource(folder / "train").classes


def test_eval_reads_a_dataset_and_its_chosen_label_column(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["zebra" if t else "ant" for t in FolderSource(folder / "val").targets]
    data = _save(datasets.DatasetDict(validation=_split(folder / "val", animal=names)), tmp_path / "eval")
    args = ["eval", "--data", str(data), "--label-column", "animal", "--workers", "0", "--engine", "torch"]
    args += ["--model", "inception_v3", "--width", "0.125", "--num-classes", "2", "--input-size", "75"]
    assert main([*args, "--json", "-", "--per-class"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 4 and result["config"]["label_column"] == "animal"
    assert [row["class"] for row in result["results"][0]["per_class"]] == ["ant", "zebra"]


def test_a_saved_dataset_becomes_shards_with_its_image_bytes_as_stored(folder: Path, saved: Path, tmp_path) -> None:
    pytest.importorskip("webdataset")
    assert main(["shards", str(saved), str(tmp_path / "wds"), "--shard-size", "4"]) == 0
    for split in ("train", "val"):
        expected, shards = FolderSource(folder / split), open_split(tmp_path / "wds", split)
        assert shards.classes == expected.classes
        stored = sorted(zip([shards.encoded(i) for i in range(len(shards))], shards.targets, strict=True))
        assert stored == sorted(zip([expected.encoded(i) for i in range(len(expected))], expected.targets, strict=True))


@pytest.mark.parametrize("where", ["absolute", "parent", "link"])
def test_a_row_naming_a_file_outside_the_dataset_is_refused(folder: Path, tmp_path: Path, where: str) -> None:
    """A dataset from elsewhere cannot make training read, or `shards` copy, a file of this machine."""
    secret = tmp_path / "secret.png"
    secret.write_bytes((folder / "train").glob("*/*").__next__().read_bytes())
    data = tmp_path / "data"
    data.mkdir()
    (data / "inside.png").write_bytes(secret.read_bytes())
    (data / "link.png").symlink_to(secret)
    named = {"absolute": str(secret), "parent": "../secret.png", "link": "link.png"}[where]
    train = _split(folder / "train").cast_column("image", datasets.Image(decode=False))
    train = train.map(
        lambda row, i: {"image": {"bytes": None, "path": named if i == 1 else "inside.png"}}, with_indices=True
    )
    pq.write_table(train.data.table, data / "train.parquet")  # as written elsewhere: to_parquet would embed the files
    with pytest.raises(SourceError, match=r"row 1: its image is the file .*outside the dataset's folder"):
        open_split(data, "train")
    ok = train.map(lambda row: {"image": {"bytes": None, "path": "inside.png"}})
    pq.write_table(ok.data.table, data / "train.parquet")
    assert open_split(data, "train").encoded(1) == (secret.read_bytes(), "png")  # its own files are read
