"""timm interoperability: `model.pretrained_cfg` (timm's data config of our networks) and networks written in
timm's layout (weights/timm_layout.py, `inceptionnet export --format timm`), loaded by timm with the same logits.

The exported networks are full-width (timm has no width multiplier) with a 5-class head, as after fine-tuning;
their BN statistics and the biases that initialisation leaves at zero are randomised, so every tensor matters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from inceptionnet import Preprocessing, create_model
from inceptionnet.cli import main
from inceptionnet.data import eval_transform
from inceptionnet.models import list_models
from inceptionnet.weights import (
    TIMM_ARCHITECTURES,
    WeightsError,
    save_model_folder,
    save_timm_folder,
    timm_state_dict,
)

timm = pytest.importorskip("timm")
from timm.data import create_transform, resolve_model_data_config  # noqa: E402 (after the importorskip)

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("cat", "dog", "fox", "owl", "yak")


def data_config_of(pre: Preprocessing, in_chans: int = 3) -> dict:
    """What timm's resolve_model_data_config must give for a network with this preprocessing."""
    return {
        "input_size": (in_chans, pre.input_size, pre.input_size),
        "interpolation": pre.interpolation,
        "mean": tuple(pre.mean),
        "std": tuple(pre.std),
        "crop_pct": pre.crop_fraction,
        "crop_mode": "center",
    }


def as_tuples(config: dict) -> dict:
    """A data config with its lists (from JSON) as tuples, for comparison."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


def randomize_biases(model: nn.Module, seed: int = 3) -> nn.Module:
    """Random classifier and residual up-projection biases (initialised to zero), so that their keys matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def image(size: int, *, batch: int = 2, channels: int = 3, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


# -- pretrained_cfg ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_timm_resolves_each_network_to_its_own_preprocessing(name):
    model = create_model(name, width=0.125)
    assert as_tuples(resolve_model_data_config(model)) == data_config_of(model.preprocessing)
    modules = dict(model.named_modules())
    cfg = model.pretrained_cfg
    assert isinstance(modules[cfg["first_conv"]], nn.Conv2d) and modules[cfg["first_conv"]].in_channels == 3
    assert isinstance(modules[cfg["classifier"]], nn.Linear) and modules[cfg["classifier"]].out_features == 1000
    assert cfg["num_classes"] == model.num_classes and cfg["architecture"] == name
    assert cfg["min_input_size"] == (3, model.min_input_size, model.min_input_size)
    assert "label_names" not in cfg  # a random classifier names no classes


def test_pretrained_cfg_follows_the_network(tmp_path):
    """Computed from the attributes each time: other preprocessing, channels, classes, a reset head, loaded weights."""
    pre = Preprocessing(input_size=139, mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3), crop_fraction=0.95)
    model = create_model("inception_v4", width=0.125, in_chans=1, num_classes=len(CLASSES))
    model.preprocessing = pre
    model.class_names = CLASSES
    assert as_tuples(resolve_model_data_config(model)) == data_config_of(pre, in_chans=1)
    assert model.pretrained_cfg["label_names"] == CLASSES and model.pretrained_cfg["num_classes"] == 5
    model.reset_classifier(7)
    assert model.pretrained_cfg["num_classes"] == 7 and "label_names" not in model.pretrained_cfg
    with pytest.raises(AttributeError):
        model.pretrained_cfg = {"num_classes": 3}  # read-only: it cannot disagree with the network
    model.reset_classifier(len(CLASSES))
    model.class_names = CLASSES
    back = create_model(weights=save_model_folder(tmp_path / "m", model))  # loading weights brings their settings
    assert back.pretrained_cfg == model.pretrained_cfg


def test_timm_transform_is_our_eval_transform():
    """timm's create_transform from the resolved config: the same resize, crop and normalisation as ours."""
    model = create_model("inception_resnet_v2", width=0.125)  # crop fraction 0.8975
    transform = create_transform(**resolve_model_data_config(model))
    resize, crop = transform.transforms[0], transform.transforms[1]
    assert resize.size == math.floor(299 / 0.8975) and crop.size == (299, 299)
    yy, xx = np.mgrid[0:360, 0:480]
    noise = np.random.default_rng(0).normal(0, 10, (360, 480, 3))
    pixels = np.stack([xx * 255 / 480, yy * 255 / 360, (xx + yy) * 255 / 840], -1) + noise
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    theirs, ours = transform(picture), eval_transform(model.preprocessing)(picture)
    assert theirs.shape == ours.shape == (3, 299, 299)
    # PIL's and torchvision's bicubic resizes differ by a rounding step here and there: 1/255 / std 0.5
    assert (theirs - ours).abs().max().item() <= 2.5 / 255 / 0.5 and (theirs - ours).abs().mean().item() < 1e-3


# -- the timm layout: parity ------------------------------------------------------------------------------------

PARITY = [
    # (network, input size, build options): aux heads built so that leaving them out is tested
    pytest.param("inception_v3", 139, {"count_include_pad": True, "aux_logits": True}, id="v3"),
    pytest.param("inception_v4", 107, {"aux_logits": True}, id="v4"),
    pytest.param("inception_resnet_v2", 107, {"aux_logits": True}, id="irv2"),
]


@pytest.mark.parametrize(("name", "size", "options"), PARITY)
def test_timm_loads_the_folder_with_the_same_logits(tmp_path, randomize_bn, name, size, options):
    ours = randomize_biases(randomize_bn(create_model(name, num_classes=len(CLASSES), **options))).eval()
    ours.class_names = CLASSES
    folder = save_timm_folder(ours, tmp_path / "timm")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    x = image(size)

    # the weights file alone, in timm's default network (no aux head): strict loading, every key used
    by_file = timm.create_model(name, num_classes=5, checkpoint_path=str(folder / "model.safetensors")).eval()
    # the folder as a whole: network, class count, class names and preprocessing from config.json
    by_folder = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        expected = ours(x)
        got_file, got_folder = by_file(x), by_folder(x)
    assert expected.shape == (2, 5) and expected.abs().max() > 0.1  # logits of a sensible size
    assert torch.allclose(got_file, expected, atol=1e-5, rtol=0)
    assert torch.allclose(got_folder, expected, atol=1e-5, rtol=0)

    cfg = by_folder.pretrained_cfg
    assert tuple(cfg["label_names"]) == CLASSES and cfg["num_classes"] == 5
    assert as_tuples(resolve_model_data_config(by_folder)) == data_config_of(ours.preprocessing)
    modules = dict(by_folder.named_modules())
    assert isinstance(modules[cfg["first_conv"]], nn.Conv2d) and isinstance(modules[cfg["classifier"]], nn.Linear)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == TIMM_ARCHITECTURES[name] and config["num_features"] == ours.num_features
    assert config["label_names"] == list(CLASSES) and config["model_args"]["num_classes"] == 5

    # our own loader reads the file back as a published-layout checkpoint
    back = create_model(name, weights=folder / "model.safetensors").eval()
    with torch.no_grad():
        assert torch.allclose(back(x), expected, atol=1e-5, rtol=0)


def test_timm_state_dict_names_and_layouts_match_timm():
    """Every key of timm's network, with its shape, and nothing else (the aux head is left out)."""
    ours = create_model("inception_v3", count_include_pad=True, aux_logits=True, num_classes=5)
    state = timm_state_dict(ours)
    reference = timm.create_model("inception_v3", num_classes=5).state_dict()
    assert set(state) == set(reference)
    assert all(state[k].shape == reference[k].shape and state[k].dtype == reference[k].dtype for k in state)


# -- what timm does not have --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("inception_resnet_v1", {"width": 0.125}, "timm has no Inception-ResNet-v1"),
        ("inception_resnet_v2_paper", {"width": 0.125}, "as the paper draws it"),
        ("inception_v4", {"width": 0.5}, "no width multiplier"),
        ("inception_v3", {}, r"counts the zero padding .* count_include_pad=False"),
        ("inception_resnet_v2", {"scales": (1.0, 1.0, 1.0)}, r"fixes the residual scales at 0.17 / 0.1 / 0.2"),
    ],
)
def test_networks_timm_lacks_are_refused_before_writing(tmp_path, name, options, message):
    model = create_model(name, **options)
    with pytest.raises(WeightsError, match=message):
        save_timm_folder(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_our_model_folder_is_never_overwritten(tmp_path):
    model = create_model("inception_v4", num_classes=2)
    ours = save_model_folder(tmp_path / "model", model)
    before = (ours / "config.json").read_bytes()
    with pytest.raises(WeightsError, match="holds an inceptionnet model folder"):
        save_timm_folder(model, ours)
    assert (ours / "config.json").read_bytes() == before


# -- the command line ---------------------------------------------------------------------------------------------


def test_cli_exports_a_model_folder_for_timm(tmp_path, randomize_bn, capsys):
    """A model folder (as a run writes it) of a 1-channel, 3-class Inception-v3 -> timm's layout -> timm."""
    model = create_model("inception_v3", count_include_pad=True, in_chans=1, num_classes=3)
    model = randomize_biases(randomize_bn(model))
    model.class_names = CLASSES[:3]
    source = save_model_folder(tmp_path / "model", model.eval())
    out = tmp_path / "for-timm"
    assert main(["export", str(source), "--format", "timm", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f'timm.create_model("local-dir:{out}", pretrained=True)' in printed
    weights_only = f'"inception_v3", num_classes=3, in_chans=1, checkpoint_path="{out}/model.safetensors")'
    assert weights_only in printed
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert loaded.pretrained_cfg["input_size"] == (1, 299, 299)
    assert tuple(loaded.pretrained_cfg["label_names"]) == CLASSES[:3]
    x = image(91, channels=1)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "inception_v3", "--format", "timm"], "count_include_pad=False"),
        (["export", "inception_resnet_v1", "--format", "timm"], "timm has no Inception-ResNet-v1"),
        (["export", "inception_v4", "--format", "timm", "--dynamic-batch"], "--dynamic-batch does not apply"),
        (["export", "inception_v4", "--format", "timm", "--input-size", "331"], "--input-size does not apply"),
    ],
)
def test_cli_timm_errors(tmp_path, capsys, argv, message):
    status = main([*argv, "--output", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert status == 2 and err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_cli_default_output_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "inception_v3:" + str(_v3_file(tmp_path)), "--format", "timm"]) == 0
    assert (tmp_path / "inception_v3-timm" / "model.safetensors").is_file()
    assert "wrote inception_v3-timm/ in timm's layout" in capsys.readouterr().out


def _v3_file(tmp_path: Path) -> Path:
    """Weights of a published-like Inception-v3 in timm's layout (so that load_model builds it with padded pools)."""
    path = tmp_path / "v3.safetensors"
    save_file(timm.create_model("inception_v3", num_classes=4).state_dict(), str(path))
    return path
