"""Augmentation recipes: the per-image policies (--augment), random erasing, mixup / cutmix in the step,
the modern preset, and a resumed run with all of them that equals the uninterrupted one."""

from __future__ import annotations

import dataclasses
import random
import typing
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2 as T

from inceptionnet.cli import main
from inceptionnet.data import AUGMENTS, SeededSamples, derive_seed
from inceptionnet.models import Preprocessing
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.inputs import training_transform
from inceptionnet.training.knobs import Augment
from inceptionnet.training.mixing import mix_batch
from inceptionnet.training.presets import PRESETS
from inceptionnet.weights.runfolder import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

PRE = Preprocessing(input_size=32)
POLICIES = {"randaugment": T.RandAugment, "trivialaugment": T.TrivialAugmentWide, "autoaugment": T.AutoAugment}


def _transform(**changes: object) -> T.Compose:
    return training_transform(dataclasses.replace(TrainConfig(), **changes), PRE, input_size=32)


def _images(count: int) -> list[Image.Image]:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (count, 40, 48, 3), dtype=torch.uint8, generator=generator)
    return [Image.fromarray(p.numpy()) for p in pixels]


class _Pictures(torch.utils.data.Dataset):
    def __init__(self, images: list[Image.Image], transform: T.Compose) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.images[index])


def test_the_choices_are_the_configs() -> None:
    assert typing.get_args(Augment) == AUGMENTS
    with pytest.raises(ValueError, match="augment 'randaug'"):
        TrainConfig(augment="randaug")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="random_erasing must be in"):
        TrainConfig(random_erasing=1.5)


@pytest.mark.parametrize("augment", AUGMENTS)
def test_each_augment_builds_its_policy(augment: str) -> None:
    steps = _transform(augment=augment, randaugment_magnitude=5, randaugment_ops=3).transforms
    kinds = [type(s) for s in steps]
    assert kinds[:3] == [T.ToImage, T.RandomResizedCrop, T.RandomHorizontalFlip]
    assert kinds[4:] == [T.ToDtype, T.Normalize]  # no RandomErasing at the default 0
    if augment == "inception":
        assert kinds[3] is T.ColorJitter
        return
    policy = steps[3]
    assert type(policy) is POLICIES[augment]
    if augment == "randaugment":
        assert (policy.magnitude, policy.num_ops) == (5, 3)
    if augment == "autoaugment":
        assert policy.policy == T.AutoAugmentPolicy.IMAGENET


def test_the_default_is_the_paper_augmentation_bit_for_bit() -> None:
    paper = T.Compose(
        [
            T.ToImage(),
            T.RandomResizedCrop(32, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=32 / 255, saturation=0.5),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=[0.5] * 3, std=[0.5] * 3),
        ]
    )
    ours = _transform()
    for i, image in enumerate(_images(4)):
        torch.manual_seed(i)
        expected = paper(image)
        torch.manual_seed(i)
        assert torch.equal(ours(image), expected)


@pytest.mark.parametrize("augment", AUGMENTS)
def test_each_image_is_a_function_of_seed_epoch_and_index(augment: str) -> None:
    """The policies draw from torch's generator alone, which SeededSamples seeds per (seed, epoch, index)."""
    samples = SeededSamples(_Pictures(_images(6), _transform(augment=augment, random_erasing=0.5)), seed=3)
    first = [samples[i] for i in range(6)]
    random.seed(1)  # Python's and torch's global generators elsewhere do not matter
    torch.manual_seed(1)
    assert all(torch.equal(samples[i], first[i]) for i in range(6))
    samples.set_epoch(1)
    assert not all(torch.equal(samples[i], first[i]) for i in range(6))


def test_random_erasing_erases_with_its_probability() -> None:
    images = _images(400)
    plain, erasing = _transform(color_distort="none"), _transform(color_distort="none", random_erasing=0.25)
    erased = 0
    for i, image in enumerate(images):  # the same draws up to the erasing, which comes last
        torch.manual_seed(i)
        kept = plain(image)
        torch.manual_seed(i)
        erased += not torch.equal(erasing(image), kept)
    assert abs(erased / 400 - 0.25) < 3 * (0.25 * 0.75 / 400) ** 0.5


def _batch(n: int = 8, size: int = 16) -> torch.Tensor:
    """Images of one distinct colour each: sample i is i + 1 everywhere."""
    return torch.arange(1.0, n + 1)[:, None, None, None].expand(n, 3, size, size).clone()


def _single_and_multi_hot(n: int = 8, classes: int = 10) -> list[torch.Tensor]:
    multi_hot = (torch.rand(n, classes, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    return [torch.arange(n), multi_hot]


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_mixup_mixes_labels_with_the_images_lambda(kind: str) -> None:
    images = _batch()
    targets = _single_and_multi_hot()[kind == "multi"]
    hot = torch.eye(10)[targets] if kind == "single" else targets
    for step in range(5):
        mixed, labels = mix_batch(images, targets, mixup=0.4, cutmix=0.0, num_classes=10, seed=0, rank=0, batch=step)
        lam = float(mixed[1, 0, 0, 0] - 1)  # sample 1 (value 2) mixed with sample 0 (value 1): lam * 2 + (1 - lam)
        assert torch.allclose(mixed, lam * images + (1 - lam) * images.roll(1, 0))
        assert labels.dtype == torch.float32 and labels.shape == (8, 10)
        assert torch.allclose(labels, lam * hot + (1 - lam) * hot.roll(1, 0))
        if kind == "single":
            assert torch.allclose(labels.sum(dim=1), torch.ones(8))


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_cutmix_lambda_is_the_kept_area(kind: str) -> None:
    images = _batch()
    targets = _single_and_multi_hot()[kind == "multi"]
    hot = torch.eye(10)[targets] if kind == "single" else targets
    for step in range(5):
        mixed, labels = mix_batch(images, targets, mixup=0.0, cutmix=1.0, num_classes=10, seed=0, rank=0, batch=step)
        kept = (mixed == images).float().mean(dim=(1, 2, 3))  # the share of each image not pasted over
        assert torch.all(kept == kept[0])
        assert torch.allclose(labels, kept[0] * hot + (1 - kept[0]) * hot.roll(1, 0))


def test_mixing_is_seeded_by_the_batch_number_and_leaves_the_generator_alone() -> None:
    images, targets = _batch(), torch.arange(8)
    assert mix_batch(images, targets, mixup=0.0, cutmix=0.0, num_classes=10, seed=0, rank=0, batch=0) == (
        images,
        targets,
    )
    both = {"mixup": 0.2, "cutmix": 1.0, "num_classes": 10, "seed": 0, "rank": 0}
    torch.manual_seed(derive_seed(0, 0, 7, 1))
    state = torch.get_rng_state()
    first = [mix_batch(images, targets, **both, batch=s)[0] for s in range(12)]
    assert torch.equal(torch.get_rng_state(), state)  # the dropout masks do not depend on the mixing
    assert all(torch.equal(mix_batch(images, targets, **both, batch=s)[0], first[s]) for s in range(12))
    boxes = [bool((m == images).any()) for m in first]  # cutmix keeps pixels as they were, mixup none
    assert any(boxes) and not all(boxes)  # one of the two per batch


def test_the_modern_preset_is_the_demo_with_the_recipe() -> None:
    demo, modern = PRESETS["demo"], PRESETS["modern"]
    changed = {k for k, v in dataclasses.asdict(modern).items() if getattr(demo, k) != v}
    assert changed == {"lr_schedule", "augment", "random_erasing", "mixup", "cutmix"}


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    """2 epochs x 3 steps of the fastest network (10 images, batch 3) with every augmentation at once."""
    args = ["train", "--data", str(data), "--out-dir", str(out), "--model", "inception_v3", "--width", "0.125"]
    args += ["--input-size", "75", "--epochs", "2", "--batch-size", "3", "--num-workers", "0", "--no-progress"]
    args += ["--augment", "randaugment", "--mixup", "0.2", "--cutmix", "1.0", "--random-erasing", "0.25"]
    return [*args, "--lr", "0.01", "--ema-decay", "0.9", *extra]


def test_a_resumed_run_with_every_augmentation_equals_the_uninterrupted_one(tmp_path, make_image_folder) -> None:
    data = make_image_folder(tmp_path / "data", train=5, val=2)
    assert main(_command(data, tmp_path / "whole")) == 0
    assert main(_command(data, tmp_path / "parts", "--max-steps", "4")) == 0  # stops mid-epoch 2
    assert main(_command(data, tmp_path / "parts")) == 0
    whole, parts = read_checkpoint(tmp_path / "whole" / "last.pt"), read_checkpoint(tmp_path / "parts" / "last.pt")
    assert whole["config"]["augment"] == "randaugment" and whole["config"]["cutmix"] == 1.0
    for key in ("model", "ema"):
        for name, value in whole[key].items():
            assert torch.equal(parts[key][name], value), f"{key}.{name}"
