"""Published-weight loading: key-table completeness, exact parity with timm, adaptation, errors, our checkpoints,
model folders (local and on the hub), timm's training checkpoints, and weights that name their network and classes.

timm builds the reference networks with random weights (no download); their state dicts, saved to
tmp_path, stand in for the published files, which have the same layout.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from inceptionnet import Preprocessing, create_model
from inceptionnet.data import imagenet_synsets
from inceptionnet.factory import load_model
from inceptionnet.weights import (
    KEY_TABLE,
    WEIGHT_TAGS,
    WeightsError,
    adapt_first_conv,
    get_weight_tag,
    list_weights,
    map_published_key,
    save_model_folder,
    save_weights,
)

timm = pytest.importorskip("timm")

PUBLISHED = ("inception_v3", "inception_v4", "inception_resnet_v2")


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """He-scaled random convolutions and random BN statistics (so BN is not the identity), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def timm_reference(name: str, **kwargs) -> nn.Module:
    return randomise(timm.create_model(name, pretrained=False, **kwargs), seed=1)


def image(size: int, *, batch: int = 1, channels: int = 3, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


# -- catalogue --------------------------------------------------------------------------------------------------


def test_catalogue_matches_timm_pretrained_configs():
    """Every tag exists in timm with the same crop, interpolation, mean and std (timm's own pretrained cfgs)."""
    from timm.models import get_pretrained_cfg

    assert {t.name for t in WEIGHT_TAGS} == {
        "inception_v4.tf_in1k",
        "inception_resnet_v2.tf_in1k",
        "inception_resnet_v2.tf_ens_adv_in1k",
        "inception_v3.tf_in1k",
        "inception_v3.tv_in1k",
        "inception_v3.gluon_in1k",
        "inception_v3.tf_adv_in1k",
    }
    for tag in WEIGHT_TAGS:
        cfg = get_pretrained_cfg(tag.name)
        assert cfg is not None, tag.name
        assert cfg.hf_hub_id.rstrip("/") in (tag.hf_repo, "timm")
        assert cfg.input_size == (3, tag.preprocessing.input_size, tag.preprocessing.input_size)
        assert cfg.crop_pct == pytest.approx(tag.preprocessing.crop_fraction)
        assert cfg.interpolation == tag.preprocessing.interpolation
        assert tuple(cfg.mean) == pytest.approx(tag.preprocessing.mean)
        assert tuple(cfg.std) == pytest.approx(tag.preprocessing.std)
        assert cfg.num_classes == 1000


def test_tag_lookup_and_errors():
    assert get_weight_tag("inception_v4").name == "inception_v4.tf_in1k"
    assert get_weight_tag("inception_v3", "inception_v3.gluon_in1k").tag == "gluon_in1k"
    assert len(list_weights("inception_v3")) == 4
    with pytest.raises(WeightsError, match="available: tf_in1k, tf_ens_adv_in1k"):
        get_weight_tag("inception_resnet_v2", "nope")
    with pytest.raises(WeightsError, match="inception_resnet_v1 has no published weights"):
        create_model("inception_resnet_v1", pretrained=True)


# -- key table ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PUBLISHED)
def test_key_table_uses_every_published_key_once_and_fills_every_key_of_ours(name):
    kwargs = {"aux_logits": True} if name == "inception_v3" else {}  # the tv_in1k file carries the aux head
    published = timm.create_model(name, pretrained=False, **kwargs).state_dict()
    ours = create_model(name, aux_logits=True).state_dict()
    mapped = [map_published_key(name, k) for k in published]
    assert len(set(mapped)) == len(mapped), "two published keys map onto one of ours"
    expected = set(ours) if name == "inception_v3" else {k for k in ours if not k.startswith("aux.")}
    assert set(mapped) == expected
    for src, dst in zip(published, mapped, strict=True):
        assert published[src].shape == ours[dst].shape, (src, dst)
    # every row of the table is used by at least one key
    used = {row for row in KEY_TABLE[name] if any(k.startswith(row[1] + ".") for k in published)}
    assert used == set(KEY_TABLE[name])


# -- exact parity with timm -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_pairs(tmp_path_factory):
    """(timm reference, our model loaded from its saved state dict), built once per network."""
    cache: dict[str, tuple[nn.Module, nn.Module]] = {}

    def get(name: str) -> tuple[nn.Module, nn.Module]:
        if name not in cache:
            ref = timm_reference(name)
            path = tmp_path_factory.mktemp("published") / f"{name}.safetensors"
            state = ref.state_dict()
            if name == "inception_v4":  # like the older published files: no BN step counters
                state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
            save_file(state, str(path))
            cache[name] = (ref, create_model(name, weights=str(path)).eval())
        return cache[name]

    return get


PARITY_CASES = [
    pytest.param("inception_v3", 299, id="v3-299"),
    pytest.param("inception_v3", 139, id="v3-139"),
    pytest.param("inception_v4", 107, id="v4-107"),
    pytest.param("inception_resnet_v2", 107, id="irv2-107"),
    pytest.param("inception_v4", 299, id="v4-299"),
    pytest.param("inception_resnet_v2", 299, id="irv2-299"),
    pytest.param("inception_v4", 331, id="v4-331", marks=pytest.mark.slow),
    pytest.param("inception_resnet_v2", 331, id="irv2-331", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "size"), PARITY_CASES)
def test_logits_match_timm(parity_pairs, name, size):
    ref, ours = parity_pairs(name)
    x = image(size)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert expected.abs().max() > 0.1  # logits of a sensible size: the comparison means something
    assert (expected - got).abs().max().item() <= 1e-5


def test_v3_parity_needs_padded_average_pools(parity_pairs):
    """The reason the v3 tags carry count_include_pad=True: without it the logits differ."""
    ref, ours = parity_pairs("inception_v3")
    pools = [m for m in ours.modules() if isinstance(m, nn.AvgPool2d)]
    assert pools and all(m.count_include_pad for m in pools)
    x = image(107)
    try:
        for m in pools:
            m.count_include_pad = False  # TensorFlow's arithmetic
        with torch.no_grad():
            assert (ref(x) - ours(x)).abs().max().item() > 1e-3
    finally:
        for m in pools:
            m.count_include_pad = True


def test_pth_file_loads_through_weights_only(tmp_path, tiny_v3):
    ref, _ = tiny_v3
    path = tmp_path / "v3.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    ours = create_model("inception_v3", weights=path, width=0.25).eval()
    x = image(107)
    with torch.no_grad():
        assert torch.equal(ref(x), ours(x))


def test_tag_from_weights_dir_applies_preprocessing_and_options(tmp_path, monkeypatch, parity_pairs):
    ref, _ = parity_pairs("inception_v3")
    monkeypatch.setenv("INCEPTIONNET_WEIGHTS_DIR", str(tmp_path))
    save_file(ref.state_dict(), str(tmp_path / "inception_v3.gluon_in1k.safetensors"))
    model = create_model("inception_v3", weights="gluon_in1k").eval()
    assert model.preprocessing == get_weight_tag("inception_v3", "gluon_in1k").preprocessing
    assert model.preprocessing.mean == (0.485, 0.456, 0.406)
    assert model.weights_name == "inception_v3.gluon_in1k"
    x = image(107)
    with torch.no_grad():
        assert (ref(x) - model(x)).abs().max().item() <= 1e-5


# -- adapting to other heads and inputs -------------------------------------------------------------------------


def test_tf_1001_class_classifier_drops_the_background_row(tmp_path, parity_pairs):
    """A TF-slim style 1001-way classifier (row 0 = background) loads into 1000 classes without row 0."""
    ref, _ = parity_pairs("inception_v3")
    state = dict(ref.state_dict())
    background = torch.randn(1, 2048, generator=torch.Generator().manual_seed(5))
    state["fc.weight"] = torch.cat([background, state["fc.weight"]])
    state["fc.bias"] = torch.cat([torch.tensor([3.0]), state["fc.bias"]])
    path = tmp_path / "v3_1001.safetensors"
    save_file(state, str(path))
    ours = create_model("inception_v3", weights=path).eval()
    assert ours.num_classes == 1000
    x = image(107)
    with torch.no_grad():
        assert (ref(x) - ours(x)).abs().max().item() <= 1e-5


@pytest.fixture(scope="module")
def tiny_v3(tmp_path_factory):
    """A small randomised Inception-v3 (width 0.25) and its checkpoint file."""
    model = randomise(create_model("inception_v3", width=0.25), seed=4)
    return model, save_weights(model, tmp_path_factory.mktemp("tiny") / "tiny_v3.safetensors")


def test_new_num_classes_gets_a_fresh_head_and_a_log_line(caplog, tiny_v3):
    ref, path = tiny_v3
    with caplog.at_level(logging.INFO, logger="inceptionnet.weights"):
        model = create_model("inception_v3", weights=path, num_classes=10).eval()
    assert "not loaded" in caplog.text and "head.fc.weight" in caplog.text
    assert model(image(75)).shape == (1, 10)
    x = image(107)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), ref.forward_features(x))


def test_first_conv_adapts_to_grey_and_multispectral_input(caplog, tiny_v3):
    ref, path = tiny_v3
    with caplog.at_level(logging.INFO, logger="inceptionnet.weights"):
        grey = create_model("inception_v3", weights=path, in_chans=1).eval()
    assert "3 -> 1 input channels" in caplog.text
    x = image(107, channels=1)
    with torch.no_grad():  # a grey image gives the colour model's answer on the same image in RGB
        assert (grey(x) - ref(x.repeat(1, 3, 1, 1))).abs().max().item() <= 1e-4
    five = create_model("inception_v3", weights=path, in_chans=5)
    w = ref.stem.conv1a.conv.weight.detach()
    torch.testing.assert_close(five.stem.conv1a.conv.weight.detach(), torch.cat([w, w[:, :2]], 1) * 3 / 5)
    assert adapt_first_conv(w, 3) is w


# -- errors ---------------------------------------------------------------------------------------------------


def test_wrong_network_or_shapes_give_clear_errors(tmp_path, parity_pairs, tiny_v3):
    ref, _ = parity_pairs("inception_v3")
    v3_file = tmp_path / "v3.safetensors"
    save_file(ref.state_dict(), str(v3_file))
    with pytest.raises(WeightsError, match=r"holds inception_v3 weights, not inception_v4 weights"):
        create_model("inception_v4", weights=v3_file)

    tiny, ours_file = tiny_v3
    with pytest.raises(WeightsError, match=r"shape mismatch: .*\(\d+ in all\)"):
        create_model("inception_v3", weights=ours_file, width=0.5)
    with pytest.raises(
        WeightsError, match=r"tiny_v3\.safetensors holds inception_v3 weights, not inception_v4 weights"
    ):
        create_model("inception_v4", weights=ours_file)

    state = dict(tiny.state_dict())
    state.pop("blocks_a.0.branch0.conv.weight")
    state["blocks_a.0.extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(broken))
    with pytest.raises(WeightsError) as err:
        create_model("inception_v3", weights=broken, width=0.25)
    text = str(err.value)
    assert "missing from the file: blocks_a.0.branch0.conv.weight (1)" in text
    assert "unexpected in the file: blocks_a.0.extra.weight (1)" in text

    with pytest.raises(WeightsError, match="does not exist"):
        create_model("inception_v3", weights=tmp_path / "absent.safetensors")
    with pytest.raises(WeightsError, match=r"unknown weights 'absent' .*no file or folder named 'absent'"):
        create_model("inception_v3", weights="absent")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        create_model("inception_v3", weights=tmp_path / "junk.safetensors")


class _NotATensor:  # pickled below: a file that weights_only loading must refuse
    pass


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": _NotATensor()}}, path)
    with pytest.raises(WeightsError, match=r"weights_only=True"):
        create_model("inception_v3", weights=path)


def test_offline_error_says_what_to_download_and_where(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # no network attempt, no retries
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("INCEPTIONNET_WEIGHTS_DIR", str(tmp_path / "manual"))
    with pytest.raises(WeightsError) as err:
        create_model("inception_resnet_v2", pretrained=True)
    text = str(err.value)
    assert "https://huggingface.co/timm/inception_resnet_v2.tf_in1k/resolve/main/model.safetensors" in text
    assert str(tmp_path / "manual" / "inception_resnet_v2.tf_in1k.safetensors") in text
    assert "weights='<path to the file>'" in text


# -- our own checkpoints -------------------------------------------------------------------------------------


def test_own_checkpoint_round_trip_restores_options_and_preprocessing(tmp_path):
    model = randomise(create_model("inception_v3", width=0.25, num_classes=7, count_include_pad=True), seed=3)
    model.preprocessing = get_weight_tag("inception_resnet_v2").preprocessing
    path = save_weights(model, tmp_path / "mine.safetensors")
    back = create_model("inception_v3", weights=path).eval()
    assert back.num_classes == 7 and back.preprocessing.crop_fraction == 0.8975
    x = image(75, batch=2)
    with torch.no_grad():
        assert torch.equal(model(x), back(x))
    # an explicit option beats the recorded one (as it beats a tag's)
    tf_pools = create_model("inception_v3", weights=path, count_include_pad=False)
    assert not any(m.count_include_pad for m in tf_pools.modules() if isinstance(m, nn.AvgPool2d))
    with pytest.raises(WeightsError, match="safetensors"):
        save_weights(model, tmp_path / "mine.pth")


# -- weights that name their network and their classes ------------------------------------------------------


def test_published_weights_name_their_network_and_the_imagenet_classes(tmp_path, parity_pairs):
    ref, ours = parity_pairs("inception_v3")
    assert ours.class_names == imagenet_synsets()
    path = tmp_path / "v3.safetensors"
    save_file(ref.state_dict(), str(path))
    unnamed = create_model(weights=path).eval()  # the published layout says which network it is
    assert unnamed.model_name == "inception_v3" and unnamed.build_options["count_include_pad"]
    x = image(107)
    with torch.no_grad():
        assert (ref(x) - unnamed(x)).abs().max().item() <= 1e-5


def test_the_class_count_comes_from_the_weights(tmp_path, tiny_v3):
    """A 3-class file gives a 3-class network with its classifier loaded, never a random 1000-class head."""
    ref, _ = tiny_v3
    state = dict(ref.state_dict())
    state["head.fc.weight"], state["head.fc.bias"] = state["head.fc.weight"][:3], state["head.fc.bias"][:3]
    plain = tmp_path / "three.pth"
    torch.save(state, plain)
    with pytest.raises(WeightsError, match=r"three.pth does not say which network it holds .*NAME:"):
        create_model(weights=plain)
    model = create_model("inception_v3", weights=plain, width=0.25).eval()
    assert model.num_classes == 3 and model.class_names is None  # a plain state dict names no classes
    x = image(107)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x)[:, :3])  # a 3-row GEMM rounds like the 1000-row one, nearly
    with pytest.raises(WeightsError, match=r"three.pth holds a 3-class inception_v3 classifier, but .* 1000 classes"):
        load_model("inception_v3", weights=plain, width=0.25, num_classes=1000)
    with pytest.raises(ValueError, match="already names weights"):
        load_model(f"inception_v3:{plain}", weights=plain)


def test_our_files_record_the_network_and_its_class_names(tmp_path, tiny_v3):
    ref, _ = tiny_v3
    named = copy.deepcopy(ref)
    named.class_names = tuple(f"class{i:04d}" for i in range(1000))
    path = save_weights(named, tmp_path / "named.safetensors")
    back = create_model(weights=path).eval()  # no name needed: the file records it
    assert back.model_name == "inception_v3" and back.class_names == named.class_names
    assert back.build_options == ref.build_options and back.weights_name == str(path)
    x = image(75)
    with torch.no_grad():
        assert torch.equal(back(x), ref(x))


def test_model_folder_round_trip_and_bad_folders(tmp_path, tiny_v3):
    ref, _ = tiny_v3
    named = copy.deepcopy(ref)
    named.class_names = tuple(f"c{i}" for i in range(1000))
    pre = Preprocessing(input_size=91, crop_fraction=0.9, interpolation="bilinear")
    folder = save_model_folder(tmp_path / "m", named, preprocessing=pre, metrics={"val_top1_error": 12.5})
    config = json.loads((folder / "config.json").read_text())
    assert config["metrics"] == {"val_top1_error": 12.5} and config["crop_pct"] == 0.9 and config["num_classes"] == 1000
    back = create_model(weights=folder).eval()
    assert back.preprocessing == pre and back.class_names == named.class_names
    x = image(91)
    with torch.no_grad():
        assert torch.equal(back(x), ref(x))
    (tmp_path / "timm").mkdir()
    (tmp_path / "timm" / "config.json").write_text(json.dumps({"architecture": "inception_v4", "num_classes": 1000}))
    with pytest.raises(WeightsError, match=r"not an inceptionnet model folder \(it describes 'inception_v4'"):
        create_model(weights=tmp_path / "timm")
    with pytest.raises(ValueError, match="one name per output"):
        save_model_folder(tmp_path / "bad", ref, class_names=["a", "b"])


def test_timm_training_checkpoint_gives_its_weight_average(tmp_path, tiny_v3, caplog):
    """A checkpoint written by timm's own CheckpointSaver (with its argparse args): state_dict_ema is taken."""
    from timm.utils import CheckpointSaver, ModelEmaV3

    raw, _ = tiny_v3
    ema = ModelEmaV3(raw, decay=0.9)
    randomise(ema.module, seed=9)  # the average differs from the raw weights, so the test sees which is loaded
    saver = CheckpointSaver(
        raw,
        torch.optim.SGD(raw.parameters(), lr=0.1),
        args=argparse.Namespace(model="inception_v3"),
        model_ema=ema,
        checkpoint_dir=str(tmp_path),
    )
    saver.save_checkpoint(epoch=0, metric=1.0)
    (path,) = tmp_path.glob("checkpoint-0.pth.tar")
    with caplog.at_level(logging.INFO, logger="inceptionnet.weights"):
        model = create_model("inception_v3", weights=path, width=0.25).eval()
    assert "its weight average (state_dict_ema)" in caplog.text
    x = image(75)
    with torch.no_grad():
        assert torch.equal(model(x), ema.module.eval()(x))


def _fill_hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay a model folder out as huggingface_hub's cache does: blobs by hash, a snapshot of links, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    (repo / "snapshots" / commit).mkdir(parents=True)
    for file in folder.iterdir():
        blob = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copy(file, repo / "blobs" / blob)
        (repo / "snapshots" / commit / file.name).symlink_to(Path("..", "..", "blobs", blob))


def test_hub_model_folder_loads_offline_from_the_cache(tmp_path, monkeypatch, tiny_v3):
    import huggingface_hub.constants as hf_constants

    ref, _ = tiny_v3
    named = copy.deepcopy(ref)
    named.class_names = tuple(f"c{i}" for i in range(1000))
    _fill_hub_cache(tmp_path / "hf", "someone/tiny-v3", save_model_folder(tmp_path / "m", named))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    model = create_model(weights="hf-hub:someone/tiny-v3").eval()  # through huggingface_hub.hf_hub_download
    assert model.weights_name == "hf-hub:someone/tiny-v3" and model.class_names == named.class_names
    x = image(75)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    with pytest.raises(WeightsError, match=r"cannot get hf-hub:someone/absent .*hf download someone/absent"):
        create_model(weights="hf-hub:someone/absent")
    with pytest.raises(WeightsError, match="write hf-hub:ORG/NAME"):
        create_model(weights="hf-hub:no-org")
