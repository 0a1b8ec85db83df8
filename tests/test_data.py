"""Training data: the Inception crop, seeded augmentation, resumable sampling, folder checks, demo data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from inceptionnet.data import (
    DEMO_DATA,
    ResumableSampler,
    SeededSamples,
    eval_transform,
    image_folders,
    train_loader,
    train_transform,
    val_loader,
)
from inceptionnet.models import Preprocessing

PRE = Preprocessing()


def tiny_image_folder(root: Path, *, classes: int = 2, train: int = 8, val: int = 4, corrupt: int = 0) -> Path:
    """root/train/<class>/*.jpg and root/val/<class>/*.jpg copied from the built-in demo data,
    plus `corrupt` unreadable files in the first training class. Shared by the training tests."""
    names = sorted(p.name for p in (DEMO_DATA / "train").iterdir())[:classes]
    for split, count in (("train", train), ("val", val)):
        for name in names:
            (root / split / name).mkdir(parents=True)
            for src in sorted((DEMO_DATA / split / name).iterdir())[:count]:
                shutil.copy(src, root / split / name / src.name)
    for i in range(corrupt):
        (root / "train" / names[0] / f"corrupt{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_demo_data_is_shipped_with_its_readme() -> None:
    train, val = image_folders(DEMO_DATA, train_transform=None, val_transform=None)
    assert len(train.classes) == 10 and train.classes == val.classes
    assert len(train) == 3000 and len(val) == 1000
    assert "Krizhevsky" in (DEMO_DATA / "README.md").read_text()
    size = sum(p.stat().st_size for p in DEMO_DATA.rglob("*") if p.is_file())
    assert size < 5_000_000  # a few MB inside the package, no more


def test_train_transform_shape_range_and_seeding() -> None:
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)
    transform = train_transform(PRE, input_size=80, color_distort="full")
    torch.manual_seed(3)
    a = transform(image)
    torch.manual_seed(3)
    b = transform(image)
    c = transform(image)
    assert a.shape == (3, 80, 80) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1  # normalised to [-1, 1]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_train_transform_crop_scale_and_options() -> None:
    # A constant image with one bright quadrant: at min_area 1.0 the whole image is kept (up to aspect
    # ratio), so the bright fraction of the output stays near 1/4.
    image = torch.zeros(3, 100, 100, dtype=torch.uint8)
    image[:, :50, :50] = 255
    transform = train_transform(PRE, input_size=75, min_area=1.0, color_distort="none")
    fractions = [(transform(image)[0] > 0).float().mean().item() for _ in range(10)]
    assert all(0.15 < f < 0.35 for f in fractions)
    with pytest.raises(ValueError, match="color_distort"):
        train_transform(PRE, color_distort="strong")


def test_seeded_samples_depend_only_on_seed_epoch_and_index() -> None:
    base = [
        torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
        for i in range(4)
    ]
    transform = train_transform(PRE, input_size=75)

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(base)

        def __getitem__(self, i: int):
            return transform(base[i]), i

    samples = SeededSamples(Images(), seed=7)
    forward = [samples[i][0] for i in range(4)]
    state = torch.get_rng_state()
    backward = [samples[i][0] for i in reversed(range(4))][::-1]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    assert all(torch.equal(f, b) for f, b in zip(forward, backward, strict=True))
    samples.set_epoch(1)
    assert not torch.equal(samples[0][0], forward[0])  # a new epoch draws new augmentations


def test_resumable_sampler_continues_mid_epoch_and_shards_ranks() -> None:
    data = list(range(23))
    full = ResumableSampler(data, num_replicas=1, rank=0, seed=5)
    full.set_epoch(3)
    order = list(full)
    assert sorted(order) == data
    full.set_epoch(3, start=10)
    assert list(full) == order[10:] and len(full) == 13
    full.set_epoch(4)
    assert list(full) != order  # reshuffled per epoch
    ranks = [ResumableSampler(data, num_replicas=2, rank=r, seed=5) for r in range(2)]
    for s in ranks:
        s.set_epoch(3)
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 12 and set(shards[0]) | set(shards[1]) == set(data)


def test_loaders_skip_and_count_corrupt_images(tmp_path: Path) -> None:
    root = tiny_image_folder(tmp_path, train=4, val=2, corrupt=1)
    train, val = image_folders(
        root, train_transform=train_transform(PRE, input_size=75), val_transform=eval_transform(PRE, input_size=75)
    )
    loader, sampler, _ = train_loader(train, batch_size=3, num_workers=0, seed=0)
    sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 3  # 9 images, full batches only
    assert sum(b.skipped for b in batches) == 1
    assert sum(len(b.targets) for b in batches) == 8
    assert batches[0].images.shape[1:] == (3, 75, 75)
    shards = [val_loader(val, batch_size=3, num_workers=0, rank=r, world_size=2) for r in range(2)]
    assert sum(len(b.targets) for s in shards for b in s) == 4  # every val image once over the ranks


def test_train_loader_with_workers_gives_the_same_batches(tmp_path: Path) -> None:
    root = tiny_image_folder(tmp_path, train=3, val=1)
    train, _ = image_folders(root, train_transform=train_transform(PRE, input_size=75), val_transform=None)
    results = []
    for workers in (0, 2):
        loader, sampler, samples = train_loader(train, batch_size=2, num_workers=workers, seed=1)
        sampler.set_epoch(2)
        samples.set_epoch(2)
        results.append(torch.cat([b.images for b in loader]))
    assert torch.equal(results[0], results[1])


def test_folder_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        image_folders(tmp_path / "nowhere", train_transform=None, val_transform=None)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class folders with images"):
        image_folders(tmp_path, train_transform=None, val_transform=None)

    root = tiny_image_folder(tmp_path / "mismatch", classes=3, train=1, val=1)
    shutil.rmtree(min((root / "val").iterdir()))
    with pytest.raises(ValueError, match=r"class folders differ .*only in train \['airplane'\]"):
        image_folders(root, train_transform=None, val_transform=None)

    root = tiny_image_folder(tmp_path / "small", train=1, val=1)
    train, _ = image_folders(root, train_transform=None, val_transform=None)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_loader(train, batch_size=4, num_workers=0, seed=0)


def test_per_class_subset_and_a_test_folder_as_validation(tmp_path: Path) -> None:
    root = tiny_image_folder(tmp_path / "d", classes=3, train=5, val=3)
    (root / "val").rename(root / "test")  # CIFAR-10's layout: train/ and test/
    train, val = image_folders(root, train_transform=None, val_transform=None, train_per_class=2, val_per_class=1)
    assert Path(val.root).name == "test"
    assert [t for _, t in train.samples] == [0, 0, 1, 1, 2, 2] == train.targets
    assert len(val) == 3 and val.imgs == val.samples
    full = sorted(p.name for p in (root / "train" / train.classes[0]).iterdir())
    assert [Path(p).name for p, _ in train.samples[:2]] == full[:2]  # the first files, in name order
    everything, _ = image_folders(root, train_transform=None, val_transform=None)
    assert len(everything) == 15
