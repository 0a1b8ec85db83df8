"""Data sources: a metadata folder (metadata.csv / metadata.jsonl) gives the same split, the same training run,
the same evaluation and the same calibration images as the image folder it was written from; bad metadata is
one clear error."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from inceptionnet.cli import main
from inceptionnet.data import collate_skipping_bad, data_splits, eval_transform, open_split
from inceptionnet.data.shardwriter import write_shards
from inceptionnet.data.sources import FolderSource, MetadataSource, SourceError, source_kind, split_classes
from inceptionnet.evaluation import evaluate
from inceptionnet.models import Preprocessing
from inceptionnet.quantization.calibration import calibration_files, calibration_set, read_calibration
from inceptionnet.training.loop import train
from inceptionnet.weights.runfolder import read_checkpoint

SPLITS = ("train", "val")


def _metadata_copy(folder: Path, out: Path, *, jsonl: bool) -> Path:
    """The image folder `folder` (train/, val/) as a metadata folder: metadata.csv beside a flat copy of the
    images, or metadata.jsonl naming them in class subfolders. Rows are written in reverse, so that the
    canonical order has to come from sorting."""
    for split in SPLITS:
        rows = []
        for image in sorted((folder / split).glob("*/*")):
            name = f"{image.parent.name}/{image.name}" if jsonl else f"{image.parent.name}-{image.name}"
            (out / split / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, out / split / name)
            rows.append({"file_name": name, "label": image.parent.name, "annotator": "someone"})
        if jsonl:
            lines = [json.dumps(row) for row in reversed(rows)]
            (out / split / "metadata.jsonl").write_text("\n".join(lines) + "\n")
        else:
            with (out / split / "metadata.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["annotator", "file_name", "label"])
                writer.writeheader()
                writer.writerows(reversed(rows))
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory, make_image_folder: Callable[..., Path]) -> dict[str, Path]:
    """One small dataset (2 classes, 4 train and 2 val images each) as a folder, a CSV and a JSONL metadata folder."""
    tmp = tmp_path_factory.mktemp("sources")
    folder = make_image_folder(tmp / "folder", train=4, val=2)
    return {
        "folder": folder,
        "csv": _metadata_copy(folder, tmp / "csv", jsonl=False),
        "jsonl": _metadata_copy(folder, tmp / "jsonl", jsonl=True),
    }


@pytest.fixture(scope="module")
def runs(datasets: dict[str, Path], make_train_config: Callable[..., object], one_thread: None) -> dict[str, object]:
    """The same seeded training run on the folder and on the CSV metadata folder."""
    out = datasets["folder"].parent / "runs"
    return {kind: train(make_train_config(datasets[kind], out / kind)) for kind in ("folder", "csv")}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_metadata_folder_reads_as_the_folder_it_was_written_from(datasets: dict[str, Path], kind: str) -> None:
    assert split_classes(datasets[kind]) == split_classes(datasets["folder"]) == ["airplane", "automobile"]
    for split in SPLITS:
        folder = open_split(datasets["folder"], split)
        metadata = open_split(datasets[kind], split)
        assert isinstance(folder, FolderSource) and isinstance(metadata, MetadataSource)
        assert source_kind(datasets[kind] / split) == "metadata" and not metadata.multi_label
        assert metadata.classes == folder.classes and metadata.targets == folder.targets
        assert [metadata.load(i).tobytes() for i in range(len(metadata))] == [
            folder.load(i).tobytes() for i in range(len(folder))
        ]
    assert open_split(datasets[kind], "train").where(0).endswith(f"metadata.{kind} line {9 if kind == 'csv' else 8})")


def test_training_on_a_metadata_folder_gives_the_same_weights(runs: dict[str, object]) -> None:
    folder, metadata = runs["folder"], runs["csv"]
    for a, b in ((folder.model, metadata.model), (folder.averaged, metadata.averaged)):
        states = a.state_dict(), b.state_dict()
        assert states[0].keys() == states[1].keys()
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), "the weights differ"
    assert folder.val_top1_error == metadata.val_top1_error


def test_eval_and_calibration_read_a_metadata_split(datasets: dict[str, Path], runs: dict[str, object]) -> None:
    model = runs["csv"].model
    on_folder = evaluate(model, datasets["folder"] / "val", workers=0)
    on_metadata = evaluate(model, datasets["jsonl"] / "val", workers=0)
    assert on_metadata.images == on_folder.images == 4 and on_metadata.scores == on_folder.scores
    # calibration draws the same images, in the same seeded order, from a metadata folder and from a folder
    assert isinstance(calibration_set(datasets["csv"] / "train"), MetadataSource)
    from_folder, _ = read_calibration(calibration_files(datasets["folder"] / "train"), model, images=5)
    from_metadata, skipped = read_calibration(calibration_set(datasets["csv"] / "train"), model, images=5)
    assert skipped == 0 and torch.equal(from_folder, from_metadata)


def test_eval_command_takes_a_metadata_folder(
    datasets: dict[str, Path], runs: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--data", str(datasets["csv"] / "val"), "--model", str(runs["csv"].out_dir)]) == 0
    assert "4 images" in capsys.readouterr().out


def test_a_corrupt_listed_image_is_skipped_and_counted(tmp_path: Path, datasets: dict[str, Path]) -> None:
    split = tmp_path / "split"
    shutil.copytree(datasets["csv"] / "val", split)
    (split / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with (split / "metadata.csv").open("a") as f:
        f.write("someone,broken.jpg,airplane\n")
    source = open_split(split, transform=eval_transform(Preprocessing(input_size=75)))
    batch = collate_skipping_bad([source[i] for i in range(len(source))])
    assert len(source) == 5 and batch.skipped == 1 and batch.images.shape[0] == 4


def test_multi_label_metadata_gives_tuple_targets_and_multi_hot_vectors(
    tmp_path: Path, datasets: dict[str, Path]
) -> None:
    images = sorted((datasets["csv"] / "train").glob("*.jpg"))[:3]
    for split in SPLITS:
        (tmp_path / "jsonl" / split).mkdir(parents=True)
        (tmp_path / "csv" / split).mkdir(parents=True)
        labels = [["dog", "cat"], ["cat"], ["outdoor", "dog"]]
        lines = [json.dumps({"file_name": f"i{n}.jpg", "labels": ls}) for n, ls in enumerate(labels)]
        (tmp_path / "jsonl" / split / "metadata.jsonl").write_text("\n".join(lines) + "\n")
        rows = [f"i{n}.jpg,{';'.join(ls)}" for n, ls in enumerate(labels)]
        (tmp_path / "csv" / split / "metadata.csv").write_text("file_name,labels\n" + "\n".join(rows) + "\n")
        for n, image in enumerate(images):
            shutil.copy(image, tmp_path / "jsonl" / split / f"i{n}.jpg")
            shutil.copy(image, tmp_path / "csv" / split / f"i{n}.jpg")
    for kind in ("jsonl", "csv"):
        source = open_split(tmp_path / kind, "train")
        assert source.classes == ["cat", "dog", "outdoor"] and source.multi_label
        assert source.targets == [(0, 1), (0,), (1, 2)]
        train, _ = data_splits(tmp_path / kind, train_transform=None, val_transform=None)
        train.give_multi_hot()
        assert train[2][1].tolist() == [0.0, 1.0, 1.0]


HEADER = "file_name,label\n"
BAD_METADATA = {
    "missing file": ("metadata.csv", HEADER + "a.jpg,cat\nb.jpg,dog\n", r"line 3 lists b.jpg, which is not a file"),
    "no file_name": (
        "metadata.csv",
        "path,label\na.jpg,cat\n",
        r"no `file_name` column \(columns found: path, label\)",
    ),
    "unknown label column": (
        "metadata.csv",
        "file_name,class\na.jpg,cat\n",
        r"unknown label column \(columns found: file_name, class\); .*`label` \(one class per image\) or `labels`",
    ),
    "empty label": ("metadata.csv", HEADER + "a.jpg, \n", r"metadata.csv line 2 \(a.jpg\) has an empty label"),
    "empty labels": ("metadata.jsonl", '{"file_name": "a.jpg", "labels": []}\n', r"line 1 \(a.jpg\) has an empty"),
    "duplicate": ("metadata.csv", HEADER + "a.jpg,cat\n./a.jpg,dog\n", r"lines 2 and 3 both list a.jpg; keep one row"),
    "malformed line": (
        "metadata.jsonl",
        '{"file_name": "a.jpg", "label": "cat"}\n\n{"file_name": "a.jpg",\n',
        r"metadata.jsonl line 3 is not valid JSON",
    ),
    "not an object": ("metadata.jsonl", '["a.jpg", "cat"]\n', r"line 1 is a JSON list, not an object"),
    "labels not a list": ("metadata.jsonl", '{"file_name": "a.jpg", "labels": "cat"}\n', r"not a JSON list"),
    "label a list": (
        "metadata.jsonl",
        '{"file_name": "a.jpg", "label": ["cat", "dog"]}\n',
        r'`label` is \["cat", "dog"\], not one class; .* go in a `labels` column',
    ),
    "row without file_name": (
        "metadata.jsonl",
        '{"file_name": "a.jpg", "label": "cat"}\n{"label": "dog"}\n',
        r"line 2 has no file_name",
    ),
    "both label columns": ("metadata.csv", "file_name,label,labels\na.jpg,cat,cat\n", r"both a `label` and a `labels`"),
    "no rows": ("metadata.csv", HEADER, r"lists no images; add one row per image"),
    # paths that leave the split folder, even where the file they name exists (a.jpg, one level up)
    "parent path": (
        "metadata.csv",
        HEADER + "a.jpg,cat\n../split/a.jpg,dog\n",
        r"line 3 names '../split/a.jpg', outside the folder of the metadata file",
    ),
    "absolute path": ("metadata.jsonl", '{"file_name": "/etc/hostname", "label": "cat"}\n', r"line 1 names '/etc/"),
    "cell over the csv limit": (
        "metadata.csv",
        HEADER + "a.jpg," + "x" * 200_000 + "\n",
        r"line 2 cannot be read as CSV",
    ),
    "windows parent path": ("metadata.csv", HEADER + "..\\..\\a.jpg,cat\n", r"line 2 names '..\\\\..\\\\a.jpg'"),
}


@pytest.mark.parametrize("case", BAD_METADATA)
def test_bad_metadata_is_one_clear_error(tmp_path: Path, datasets: dict[str, Path], case: str) -> None:
    name, text, message = BAD_METADATA[case]
    split = tmp_path / "split"
    split.mkdir()
    shutil.copy(next((datasets["csv"] / "train").glob("*.jpg")), split / "a.jpg")
    (split / name).write_text(text)
    with pytest.raises(SourceError, match=message):
        open_split(split)


def test_a_folder_with_both_metadata_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text(HEADER)
    (tmp_path / "metadata.jsonl").write_text("")
    with pytest.raises(SourceError, match=r"holds both metadata\.csv and metadata\.jsonl; keep one of them"):
        open_split(tmp_path)


def test_every_source_of_the_same_images_trains_to_the_same_class_list(
    datasets: dict[str, Path], runs: dict[str, object], make_train_config: Callable[..., object], tmp_path: Path
) -> None:
    hf = pytest.importorskip("datasets")
    pytest.importorskip("webdataset")
    folder = datasets["folder"]
    write_shards(folder, tmp_path / "shards")
    splits = {}
    for split, name in (("train", "train"), ("val", "validation")):
        source = FolderSource(folder / split)
        features = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=source.classes)})
        rows = {"image": [{"bytes": p.read_bytes(), "path": None} for p in source.paths], "label": source.targets}
        splits[name] = hf.Dataset.from_dict(rows, features=features)
    hf.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    classes = {kind: read_checkpoint(run.out_dir)["classes"] for kind, run in runs.items()}  # folder, csv
    for kind in ("shards", "saved"):
        classes[kind] = read_checkpoint(train(make_train_config(tmp_path / kind, tmp_path / f"run-{kind}")).out_dir)[
            "classes"
        ]
    assert classes["folder"] == ["airplane", "automobile"] and all(c == classes["folder"] for c in classes.values())
