"""One network, one card: the network, its fused copy, its exported files, its int8 folder, its model folder
and the network an engine runs all describe it alike, and each card survives to_dict / from_dict."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from inceptionnet import create_model
from inceptionnet.card import ModelCard, UnknownRule
from inceptionnet.export.formats import export_model, read_export_card
from inceptionnet.export.fuse import fuse_for_inference
from inceptionnet.export.runtimes import engine_installed
from inceptionnet.inference.engines import inference_network
from inceptionnet.models import InceptionNetwork
from inceptionnet.quantization.int8folder import describe_quantized
from inceptionnet.quantization.quantize import load_quantized, quantize_model
from inceptionnet.weights.artifact import save_model_folder

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 75  # the smallest input: every file here is made in seconds
CLASSES = ("airplane", "automobile", "bird")
# What every description of the same network must say alike; weights_name says where the weights came
# from (a model folder names itself), and input_size_fixed is checked on its own below.
AGREE = (
    "model_name",
    "options",
    "num_classes",
    "in_chans",
    "class_names",
    "preprocessing",
    "min_input_size",
    "label_mode",
    "thresholds",
    "temperature",
    "unknown",
)
needs_onnx = pytest.mark.skipif(
    not engine_installed("onnxruntime") or importlib.util.find_spec("onnxscript") is None,
    reason="needs onnxruntime and onnxscript",
)


@pytest.fixture(scope="module")
def net() -> InceptionNetwork:
    torch.manual_seed(0)
    model = create_model("inception_v3", num_classes=len(CLASSES), width=0.25).eval()
    model.preprocessing = dataclasses.replace(model.preprocessing, input_size=SIZE, crop_fraction=0.9)
    model.class_names = CLASSES
    model.temperature, model.unknown = 1.5, UnknownRule(score="energy", threshold=2.25)  # fitted by calibrate
    return model


def assert_agrees(card: ModelCard, reference: ModelCard, *, fixed: bool) -> None:
    """`card` says what `reference` says (AGREE), takes one size only when `fixed`, and round-trips."""
    for name in AGREE:
        assert getattr(card, name) == getattr(reference, name), name
    assert card.input_size_fixed is fixed
    assert ModelCard.from_dict(card.to_dict(), source="test") == card


def test_the_network_and_its_fused_copy(net: InceptionNetwork) -> None:
    card = net.card
    assert (card.class_names, card.preprocessing.input_size, card.options["width"]) == (CLASSES, SIZE, 0.25)
    assert_agrees(card, card, fixed=False)
    assert_agrees(fuse_for_inference(net).card, card, fixed=False)
    on_torch = inference_network(net, "torch", device="cpu")
    assert_agrees(on_torch.card, card, fixed=False)
    assert on_torch.input_size is None and on_torch.class_names == CLASSES


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=needs_onnx)])
def test_an_exported_file(net: InceptionNetwork, tmp_path: Path, fmt: str) -> None:
    result = export_model(net, format=fmt, output=tmp_path / f"net.{'onnx' if fmt == 'onnx' else 'pt'}")
    assert_agrees(read_export_card(result.path), net.card, fixed=True)


@needs_onnx
def test_the_network_on_an_engine(net: InceptionNetwork) -> None:
    fast = inference_network(net, "onnxruntime", input_size=SIZE, cache=False)
    assert_agrees(fast.card, net.card, fixed=True)
    assert fast.input_size == SIZE and read_export_card(fast.onnx_file) == fast.card


@needs_onnx
def test_an_int8_folder(net: InceptionNetwork, tmp_path: Path, make_image_folder: Callable[..., Path]) -> None:
    data = make_image_folder(tmp_path / "images", classes=2, train=2, val=0)
    folder = tmp_path / "int8"
    quantize_model(net, data / "train", folder, images=4, method="minmax", rounding="nearest", engine_check=None)
    _, card = describe_quantized(folder)
    assert_agrees(card, net.card, fixed=True)
    network = load_quantized(folder, engine="onnxruntime")
    assert network.card == card and network.input_size == SIZE


def test_a_model_folder(net: InceptionNetwork, tmp_path: Path) -> None:
    folder = save_model_folder(tmp_path / "folder", net)
    assert_agrees(create_model(weights=folder).card, net.card, fixed=False)
