"""Data: the demo folders and their checks, the Inception training crop, seeded augmentation, resumable
sampling, the ImageNet class table, and the view geometry of the 1 / 10 / 12 / 144-crop evaluation schemes
(docs/evaluation.md) on small known images."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from inceptionnet.data import (
    DEMO_DATA,
    ResumableSampler,
    SeededSamples,
    data_splits,
    eval_transform,
    imagenet_synsets,
    read_image,
    train_loader,
    train_transform,
    val_loader,
)
from inceptionnet.data.crops import (
    center_box,
    corner_boxes,
    googlenet_crops,
    multi_scale_sizes,
    render_views,
    resized_size,
    single_crop,
    square_boxes,
    ten_crops,
    twelve_crops,
    views_for,
)
from inceptionnet.models import Preprocessing

PRE = Preprocessing()
SCHEMES = (1, 10, 12, 144)


# -- image folders, training transforms and loaders ----------------------------------------------------------


def test_demo_data_is_shipped_with_its_readme() -> None:
    train, val = data_splits(DEMO_DATA, train_transform=None, val_transform=None)
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


def test_loaders_skip_and_count_corrupt_images(tmp_path: Path, make_image_folder: Callable[..., Path]) -> None:
    root = make_image_folder(tmp_path, train=4, val=2, corrupt=1)
    train, val = data_splits(
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


def test_train_loader_with_workers_gives_the_same_batches(
    tmp_path: Path, make_image_folder: Callable[..., Path]
) -> None:
    root = make_image_folder(tmp_path, train=3, val=1)
    train, _ = data_splits(root, train_transform=train_transform(PRE, input_size=75), val_transform=None)
    results = []
    for workers in (0, 2):
        loader, sampler, samples = train_loader(train, batch_size=2, num_workers=workers, seed=1)
        sampler.set_epoch(2)
        samples.set_epoch(2)
        results.append(torch.cat([b.images for b in loader]))
    assert torch.equal(results[0], results[1])


def test_folder_errors_name_the_problem(tmp_path: Path, make_image_folder: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        data_splits(tmp_path / "nowhere", train_transform=None, val_transform=None)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class folders with images"):
        data_splits(tmp_path, train_transform=None, val_transform=None)

    root = make_image_folder(tmp_path / "mismatch", classes=3, train=1, val=1)
    shutil.rmtree(min((root / "val").iterdir()))
    with pytest.raises(ValueError, match=r"class lists of .* differ: only in train \['airplane'\]"):
        data_splits(root, train_transform=None, val_transform=None)

    root = make_image_folder(tmp_path / "small", train=1, val=1)
    train, _ = data_splits(root, train_transform=None, val_transform=None)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_loader(train, batch_size=4, num_workers=0, seed=0)


def test_per_class_subset_and_a_test_folder_as_validation(
    tmp_path: Path, make_image_folder: Callable[..., Path]
) -> None:
    root = make_image_folder(tmp_path / "d", classes=3, train=5, val=3)
    (root / "val").rename(root / "test")  # CIFAR-10's layout: train/ and test/
    train, val = data_splits(root, train_transform=None, val_transform=None, train_per_class=2, val_per_class=1)
    assert Path(val.origin).name == "test"
    assert train.targets == [0, 0, 1, 1, 2, 2] and len(train.paths) == 6
    assert len(val) == 3 and len(val.paths) == 3
    full = sorted(p.name for p in (root / "train" / train.classes[0]).iterdir())
    assert [p.name for p in train.paths[:2]] == full[:2]  # the first files, in name order
    everything, _ = data_splits(root, train_transform=None, val_transform=None)
    assert len(everything) == 15


# -- the ImageNet class table ----------------------------------------------------------------------------


def test_imagenet_synsets_table() -> None:
    synsets = imagenet_synsets()
    assert len(synsets) == 1000 == len(set(synsets))
    assert list(synsets) == sorted(synsets)
    assert (synsets[0], synsets[999]) == ("n01440764", "n15075141")


def test_imagenet_synsets_match_the_sample(imagenet_sample: Path) -> None:
    assert sorted({p.name.split("_")[0] for p in imagenet_sample.glob("n*.JPEG")}) == list(imagenet_synsets())


# -- view geometry of the evaluation schemes --------------------------------------------------------------


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """uint8 (3, H, W): channel 0 holds the column, channel 1 the row, channel 2 is 7."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([xs, ys, torch.full_like(xs, 7)]).to(torch.uint8)


def in_bounds(view) -> bool:
    h, w = view.scale
    left, top, right, bottom = view.box
    return 0 <= left < right <= w and 0 <= top < bottom <= h


@pytest.mark.parametrize(("h", "w", "s"), [(100, 150, 85), (150, 100, 85), (97, 97, 342), (375, 500, 341), (1, 3, 80)])
def test_resized_size_is_torchvisions(h: int, w: int, s: int) -> None:
    out = F.resize(torch.zeros(1, h, w), [s], antialias=True)
    assert resized_size(h, w, s) == tuple(out.shape[-2:])


def test_box_helpers() -> None:
    assert center_box(85, 127, 75) == (26, 5, 101, 80)  # offsets round((127-75)/2)=26, round((85-75)/2)=5
    assert corner_boxes(85, 127, 75) == [(0, 0, 75, 75), (52, 0, 127, 75), (0, 10, 75, 85), (52, 10, 127, 85)]
    assert square_boxes(85, 127) == [(0, 0, 85, 85), (21, 0, 106, 85), (42, 0, 127, 85)]
    assert square_boxes(127, 85) == [(0, 0, 85, 85), (0, 21, 85, 106), (0, 42, 85, 127)]


def test_single_crop_geometry() -> None:
    # 100x150 (h x w), 75 input, fraction 0.875: shorter side floor(75 / 0.875) = 85 -> 85x127, centre 75.
    (v,) = single_crop(100, 150, input_size=75, crop_fraction=0.875)
    assert v.scale == (85, 127) and v.box == (26, 5, 101, 80) and not v.mirror
    (v,) = single_crop(150, 100, input_size=75, crop_fraction=0.875)
    assert v.scale == (127, 85) and v.box == (5, 26, 80, 101)


def test_ten_crops_geometry() -> None:
    views = ten_crops(100, 150, input_size=75, crop_fraction=0.875)
    assert len(views) == 10
    assert all(v.scale == (85, 127) and v.box_size == (75, 75) and in_bounds(v) for v in views)
    corners_and_centre = [(0, 0, 75, 75), (52, 0, 127, 75), (0, 10, 75, 85), (52, 10, 127, 85), (26, 5, 101, 80)]
    assert [v.box for v in views] == corners_and_centre * 2
    assert [v.mirror for v in views] == [False] * 5 + [True] * 5


def test_twelve_crops_geometry() -> None:
    for h, w, whole in [(100, 150, (21, 0, 106, 85)), (150, 100, (0, 21, 85, 106)), (90, 90, (0, 0, 85, 85))]:
        views = twelve_crops(h, w, input_size=75, crop_fraction=0.875)
        assert len(views) == 12 and all(in_bounds(v) for v in views)
        assert [v.mirror for v in views] == [False] * 6 + [True] * 6
        assert views[5].box == views[11].box == whole  # the central square, resized whole
        assert [v.box for v in views[:5]] == [v.box for v in ten_crops(h, w, input_size=75, crop_fraction=0.875)[:5]]


def test_multi_scale_sizes() -> None:
    assert multi_scale_sizes(224) == (256, 288, 320, 352)  # GoogLeNet's own
    assert multi_scale_sizes(299) == (342, 384, 427, 470)  # ours for 299 inputs, same ratios


@pytest.mark.parametrize(("h", "w"), [(375, 500), (500, 375)])
def test_googlenet_crops_geometry(h: int, w: int) -> None:
    views = googlenet_crops(h, w, input_size=299)
    assert len(views) == 144 and all(in_bounds(v) for v in views)
    assert sum(v.mirror for v in views) == 72
    assert {v.scale for v in views} == {resized_size(h, w, s) for s in (342, 384, 427, 470)}
    # every (scale, box) twice, once mirrored: 4 scales x 3 squares x 6 boxes distinct
    pairs = {(v.scale, v.box) for v in views}
    assert len(pairs) == 72
    assert all(sum(1 for v in views if (v.scale, v.box) == p) == 2 for p in list(pairs)[:10])
    whole = [v for v in views if v.box_size != (299, 299)]
    assert len(whole) == 24 and all(v.box_size[0] == v.box_size[1] == min(v.scale) for v in whole)
    # the three squares run along the longer side: left/centre/right or top/centre/bottom
    first = [v for v in whole if v.scale == resized_size(h, w, 342) and not v.mirror]
    lefts, tops = [v.box[0] for v in first], [v.box[1] for v in first]
    if w > h:
        assert tops == [0, 0, 0] and lefts == [0, (456 - 342) // 2, 456 - 342]
    else:
        assert lefts == [0, 0, 0] and tops == [0, (456 - 342) // 2, 456 - 342]


def test_googlenet_crops_at_224_use_googlenet_scales() -> None:
    views = googlenet_crops(256, 256, input_size=224)
    assert sorted({v.scale for v in views}) == [(256, 256), (288, 288), (320, 320), (352, 352)]


def test_views_for_dispatches_and_rejects() -> None:
    for n in SCHEMES:
        assert len(views_for(n, 120, 90, input_size=75, crop_fraction=0.875)) == n
    with pytest.raises(ValueError, match="crops must be one of"):
        views_for(5, 120, 90, input_size=75, crop_fraction=0.875)
    with pytest.raises(ValueError, match="crop_fraction"):
        views_for(1, 120, 90, input_size=75, crop_fraction=1.5)


def test_render_cuts_the_boxes() -> None:
    # An image already at the resized size (85x127 for 75 / 0.875), so every crop is a pure slice.
    image = coordinate_image(85, 127)
    views = twelve_crops(85, 127, input_size=75, crop_fraction=0.875)
    out = render_views(image, views, input_size=75)
    assert out.shape == (12, 3, 75, 75) and out.dtype == torch.uint8
    for v, crop in zip(views[:5], out[:5], strict=True):
        left, top, right, bottom = v.box
        assert crop[0, 0, 0] == left and crop[1, 0, 0] == top
        assert crop[0, -1, -1] == right - 1 and crop[1, -1, -1] == bottom - 1


@pytest.mark.parametrize("n", SCHEMES)
@pytest.mark.parametrize(("h", "w"), [(90, 131), (131, 90)])
def test_mirrored_views_are_mirrored(n: int, h: int, w: int) -> None:
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    views = views_for(n, h, w, input_size=75, crop_fraction=0.875)
    out = render_views(image, views, input_size=75)
    for i, v in enumerate(views):
        twins = [j for j, u in enumerate(views) if (u.scale, u.box) == (v.scale, v.box) and u.mirror != v.mirror]
        if n == 1:
            assert not twins
            continue
        assert len(twins) >= 1
        assert torch.equal(out[twins[0]], out[i].flip(-1))
        assert not torch.equal(out[twins[0]], out[i])  # random content is not symmetric


@pytest.mark.parametrize("n", SCHEMES)
def test_constant_image_gives_identical_views(n: int) -> None:
    image = torch.full((3, 97, 143), 0, dtype=torch.uint8)
    image[0], image[1], image[2] = 200, 31, 90
    out = render_views(image, views_for(n, 97, 143, input_size=75, crop_fraction=0.875), input_size=75)
    assert out.shape[0] == n
    assert torch.equal(out, image[:, :75, :75].expand(n, 3, 75, 75))


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize(("h", "w", "fraction"), [(100, 150, 0.875), (151, 97, 0.8975), (120, 120, 0.875)])
def test_single_view_equals_eval_transform(interpolation: str, h: int, w: int, fraction: float) -> None:
    pre = dataclasses.replace(Preprocessing(), input_size=75, crop_fraction=fraction, interpolation=interpolation)
    pixels = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(h))
    image = Image.fromarray(pixels.numpy())
    expected = eval_transform(pre)(image)
    (view,) = render_views(
        F.pil_to_tensor(image),
        single_crop(h, w, input_size=75, crop_fraction=fraction),
        input_size=75,
        interpolation=interpolation,
    )
    got = F.normalize(F.to_dtype(view, torch.float32, scale=True), mean=list(pre.mean), std=list(pre.std))
    assert torch.equal(got, expected)


def test_a_photo_stored_sideways_is_read_upright(tmp_path: Path) -> None:
    upright = Image.new("RGB", (40, 20), (255, 0, 0))
    upright.paste((0, 0, 255), (20, 0, 40, 20))  # red left half, blue right half
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a phone stores a picture taken turned
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to view
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    photo = read_image(tmp_path / "photo.jpg")
    assert photo.size == (40, 20)
    left, right = photo.getpixel((5, 10)), photo.getpixel((35, 10))
    assert left[0] > 200 > left[2] and right[2] > 200 > right[0]
    with Image.open(tmp_path / "photo.jpg") as raw:
        assert raw.size == (20, 40)  # what a reader without the tag would see: sideways
