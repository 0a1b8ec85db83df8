"""WebDataset tar shards: written from a folder with the same samples, read by a map-style source, dealt out to the
ranks shard by shard, resumed exactly (also after SIGKILL), and bad shards refused or bad members skipped."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from inceptionnet.cli import main
from inceptionnet.data import ShardSampler, open_split, train_loader, val_loader
from inceptionnet.data.loaders import shard_orders
from inceptionnet.data.shardwriter import write_shards
from inceptionnet.data.sources import ShardSource, SourceError, source_kind
from inceptionnet.data.sources import shards as shards_module
from inceptionnet.data.sources.shards import index_path
from inceptionnet.weights.runfolder import read_checkpoint, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, make_image_folder) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("shards") / "data", train=5, val=2)


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory) -> Path:
    """`folder` written by `inceptionnet shards` at 3 samples per shard: train 3+3+3+1, val 3+1."""
    dst = tmp_path_factory.mktemp("written") / "shards"
    assert main(["shards", str(folder), str(dst), "--shard-size", "3"]) == 0
    return dst


def _key(source: ShardSource, i: int) -> int:
    return int(source.samples[i].name.split(".")[0])  # the writer's key: the sample's index in the folder


def test_the_shards_hold_the_folders_samples_bytes_and_targets(folder, shards, capsys) -> None:
    for split in ("train", "val"):
        original, written = open_split(folder, split), open_split(shards, split)
        assert source_kind(shards / split) == "shards" and isinstance(written, ShardSource)
        assert written.classes == original.classes
        keys = [_key(written, i) for i in range(len(written))]
        assert sorted(keys) == list(range(len(original)))
        for i, key in enumerate(keys):
            assert written.encoded(i) == original.encoded(key)  # copied, not re-encoded (the demo's are .jpg)
            assert written.targets[i] == original.targets[key]
    assert keys == sorted(keys)  # val keeps the source's order; train is shuffled
    info = json.loads((shards / "train" / "_info.json").read_text())
    assert info["shard_lengths"] == [3, 3, 3, 1] and info["num_samples"] == 10
    timm = json.loads((shards / "_info.json").read_text())["splits"]
    assert timm["val"]["filenames"] == ["val/val-000000.tar", "val/val-000001.tar"]
    assert [p.name for p in shards.parent.iterdir()] == ["shards"]  # no temporary folder left


def test_images_are_copied_and_other_formats_written_as_png(make_image_folder, tmp_path) -> None:
    data = make_image_folder(tmp_path / "data", train=2, val=1)
    first, second = sorted((data / "train").iterdir())
    jpeg = next(first.iterdir()).rename(first / "a.JPEG")
    Image.open(jpeg).save(second / "b.bmp")
    write_shards(data, tmp_path / "shards")
    source = open_split(tmp_path / "shards", "train")
    members = {_key(source, i): source.encoded(i) for i in range(len(source))}
    original = open_split(data, "train")
    copied = original.paths.index(jpeg)
    assert members[copied] == (jpeg.read_bytes(), "jpg")  # the same bytes, timm's extension
    bmp = members[original.paths.index(second / "b.bmp")]
    assert bmp[1] == "png" and Image.open(io.BytesIO(bmp[0])).tobytes() == Image.open(second / "b.bmp").tobytes()


def test_an_existing_destination_is_refused_and_a_failed_write_leaves_nothing(folder, shards, tmp_path) -> None:
    with pytest.raises(SourceError, match="already exists"):
        write_shards(folder, shards)

    def fail(split) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_shards(folder, tmp_path / "new", progress=fail)
    assert list(tmp_path.iterdir()) == []


def test_shard_order_deals_every_sample_once_and_is_a_pure_function_of_seed_and_epoch() -> None:
    shards = [list(range(s, s + 4)) for s in range(0, 24, 4)]  # 6 shards of 4
    orders = shard_orders(shards, seed=3, epoch=1, world_size=2)
    ranks = [ShardSampler(shards, num_replicas=2, rank=rank, seed=3) for rank in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(1)
    assert [list(sampler) for sampler in ranks] == orders
    assert sorted(orders[0] + orders[1]) == list(range(24))
    for order in orders:  # each rank reads whole shards, one after the other
        assert [i // 4 for i in order] == [s for s in dict.fromkeys(i // 4 for i in order) for _ in range(4)]
    assert orders == shard_orders(shards, seed=3, epoch=1, world_size=2)
    assert orders != shard_orders(shards, seed=3, epoch=2, world_size=2)
    assert orders != shard_orders(shards, seed=4, epoch=1, world_size=2)


def test_uneven_shards_are_balanced_and_pad_less_than_one_sample_per_rank() -> None:
    shards = [list(range(0, 7)), list(range(7, 9)), list(range(9, 19)), list(range(19, 20))]  # 20 samples
    orders = shard_orders(shards, seed=0, epoch=0, world_size=3)
    assert [len(o) for o in orders] == [7, 7, 7]
    counts = Counter(i for order in orders for i in order)
    assert set(counts) == set(range(20)) and sum(counts.values()) - 20 == 1


def test_a_resumed_sampler_gives_the_tail_of_the_uninterrupted_order() -> None:
    shards = [list(range(s, s + 5)) for s in range(0, 30, 5)]
    for rank in (0, 1):
        sampler = ShardSampler(shards, num_replicas=2, rank=rank, seed=7)
        sampler.set_epoch(2)
        whole = list(sampler)
        assert whole == shard_orders(shards, seed=7, epoch=2, world_size=2)[rank] and len(sampler) == 15
        sampler.set_epoch(2, start=4)
        assert list(sampler) == whole[4:] and len(sampler) == 11


def test_the_class_balanced_sampler_is_refused_on_shards_with_the_fix(shards) -> None:
    with pytest.raises(ValueError, match=r"tar shards .* --sampler shuffle"):
        train_loader(open_split(shards, "train"), batch_size=2, num_workers=0, seed=0, balanced=True)


def test_a_corrupt_member_is_skipped_and_counted(make_image_folder, tmp_path) -> None:
    data = make_image_folder(tmp_path / "data", train=2, val=1, corrupt=1)
    write_shards(data, tmp_path / "shards")
    source = open_split(tmp_path / "shards", "train", transform=lambda image: torch.tensor(image.size))
    batches = list(val_loader(source, batch_size=5, num_workers=0))
    assert sum(b.skipped for b in batches) == 1 and sum(len(b.targets) for b in batches) == 4


def test_a_truncated_shard_names_the_shard_and_the_fix(shards, tmp_path) -> None:
    split = shutil.copytree(shards / "train", tmp_path / "train")
    shard = split / "train-000001.tar"
    shard.write_bytes(shard.read_bytes()[:1700])
    with pytest.raises(SourceError, match=r"shard .*train-000001.tar is truncated or damaged.*inceptionnet shards"):
        ShardSource(split)


def test_shards_and_info_that_disagree_are_refused(shards, tmp_path) -> None:
    split = shutil.copytree(shards / "train", tmp_path / "train")
    shutil.copy(split / "train-000000.tar", split / "extra.tar")
    with pytest.raises(SourceError, match=r"not listed \['extra.tar'\]"):
        ShardSource(split)
    (split / "extra.tar").unlink()
    info = json.loads((split / "_info.json").read_text())
    (split / "_info.json").write_text(json.dumps({**info, "shard_lengths": [3, 3, 2, 1]}))
    with pytest.raises(SourceError, match=r"train-000002.tar holds 3 samples but .* lists 2"):
        ShardSource(split)
    (split / "train-000003.tar").unlink()
    with pytest.raises(SourceError, match=r"listed but missing \['train-000003.tar'\]"):
        ShardSource(split)


def test_shards_without_info_are_read_in_name_order_with_numbered_classes(shards, tmp_path) -> None:
    split = shutil.copytree(shards / "val", tmp_path / "val")
    (split / "_info.json").unlink()
    source = ShardSource(split)
    assert source.classes == ["0", "1"] and len(source) == 4
    with tarfile.open(split / "val-000000.tar") as tar:
        assert tar.getnames()[:2] == ["00000000.cls", "00000000.jpg"]


def _train(data: Path, out: Path) -> list[str]:
    """A tiny training command on `data`: 2 epochs x 3 steps (10 images, batch 3), a checkpoint after each step."""
    args = ["train", "--data", str(data), "--out-dir", str(out), "--model", "inception_v3", "--width", "0.125"]
    args += ["--input-size", "75", "--epochs", "2", "--batch-size", "3", "--num-workers", "0", "--no-progress"]
    return [*args, "--lr", "0.01", "--ema-decay", "0.9", "--log-every", "1", "--checkpoint-every", "1"]


def test_a_sharded_run_killed_mid_epoch_continues_to_the_same_weights(shards, tmp_path) -> None:
    assert main(_train(shards, tmp_path / "reference")) == 0
    out = tmp_path / "run"
    command = [sys.executable, "-m", "inceptionnet", *_train(shards, out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (out / "last.pt").exists() and job.poll() is None:  # written after step 1
            time.sleep(0.02)
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=60)
    finally:
        job.kill()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"continuing from {out / 'last.pt'}" in again.stdout
    assert re.search(r"at epoch 1, step [12]\b", again.stdout)  # killed mid-epoch: the sampler skips what was seen
    records = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 7))
    x, y = read_checkpoint(out / "last.pt"), read_checkpoint(tmp_path / "reference" / "last.pt")
    assert x["position"] == y["position"]
    for key in ("model", "ema"):
        for name in x[key]:
            assert torch.equal(x[key][name], y[key][name]), f"{key}.{name}"


def test_the_written_member_index_spares_the_header_scan_until_a_shard_changes(folder, tmp_path, monkeypatch) -> None:
    dst = tmp_path / "indexed"
    assert main(["shards", str(folder), str(dst), "--shard-size", "4"]) == 0
    shard = dst / "train" / "train-000000.tar"
    assert index_path(shard).is_file()
    expected = open_split(dst, "train")
    samples, targets = list(expected.samples), list(expected.targets)
    shards_module._INDEX.clear()

    def no_scan(*args, **kwargs):
        raise AssertionError("the tar headers were scanned although the index is there")

    monkeypatch.setattr(shards_module.tarfile, "open", no_scan)
    again = open_split(dst, "train")
    assert again.samples == samples and again.targets == targets
    monkeypatch.undo()
    shards_module._INDEX.clear()
    stored = json.loads(index_path(shard).read_text())
    index_path(shard).write_text(json.dumps({**stored, "tar_size": stored["tar_size"] + 1}))  # a rewritten tar
    assert open_split(dst, "train").samples == samples  # scanned again, the same index


def test_a_shard_relabelled_in_place_is_read_with_its_own_labels(folder, tmp_path) -> None:
    """Same size, same modification time, same member names: the index's offsets still hold, and the labels
    come from the tar's members, never from the index."""
    dst = tmp_path / "relabelled"
    assert main(["shards", str(folder), str(dst), "--shard-size", "4"]) == 0
    shard = dst / "train" / "train-000000.tar"
    before = open_split(dst, "train").targets[:4]
    stat = shard.stat()
    data = bytearray(shard.read_bytes())
    with tarfile.open(shard) as tar:
        cls = next(m for m in tar.getmembers() if m.name.endswith(".cls"))
    old = bytes(data[cls.offset_data : cls.offset_data + cls.size])
    new = b"1" if old.strip() == b"0" else b"0"
    data[cls.offset_data : cls.offset_data + cls.size] = new.ljust(cls.size)  # one label changed, same length
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the tar's time as it was
    shards_module._INDEX.clear()
    after = open_split(dst, "train").targets[:4]
    assert after[0] == int(new) and after[0] != before[0] and after[1:] == before[1:]


def test_an_index_whose_offsets_do_not_match_the_tar_is_not_used(folder, tmp_path) -> None:
    dst = tmp_path / "moved"
    assert main(["shards", str(folder), str(dst), "--shard-size", "4"]) == 0
    shard = dst / "train" / "train-000000.tar"
    expected = open_split(dst, "train").samples
    stored = json.loads(index_path(shard).read_text())
    for exts in stored["samples"].values():
        for member in exts.values():
            member[0] += 512  # every offset one block off: it no longer follows its member's header
    index_path(shard).write_text(json.dumps(stored))
    os.utime(index_path(shard))
    shards_module._INDEX.clear()
    assert open_split(dst, "train").samples == expected  # the headers were read again


def test_a_shard_list_naming_files_outside_its_folder_is_refused(shards, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    info = copy / "val" / "_info.json"
    listed = json.loads(info.read_text())
    for name in ("../train/train-000000.tar", "/etc/passwd"):
        info.write_text(json.dumps({**listed, "filenames": [*listed["filenames"], name]}))
        with pytest.raises(SourceError, match="which are not files of its folder"):
            open_split(copy, "val")
