"""Engines: `inference_network` on torch, ONNX Runtime and OpenVINO computes the eager network's logits, auto picks as
documented, errors name the fix, and `inceptionnet predict` / `eval` give the same classes on every engine."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.data import DEMO_DATA, eval_transform, read_image
from inceptionnet.export.onnxcache import network_digest, onnx_export
from inceptionnet.export.runtimes import EngineNetwork, EngineUnavailable, engine_installed
from inceptionnet.inference.engines import (
    TorchNetwork,
    bf16_supported,
    choose_engine,
    describe_engine,
    inference_network,
)
from inceptionnet.inference.predict import predict
from inceptionnet.models import Preprocessing
from inceptionnet.weights import save_model_folder

SIZE = 107
CPU_ENGINES = ("onnxruntime", "openvino")
needs_engines = pytest.mark.skipif(
    not all(engine_installed(e) for e in CPU_ENGINES), reason="needs onnxruntime and openvino (the dev extra)"
)
needs_bf16 = pytest.mark.usefixtures("native_bf16")  # conftest: skips where the CPU has no native bf16


def demo_images(count: int = 8) -> list[Path]:
    """One or two images of each demo class: real pictures, so that logits are those of natural input."""
    return [sorted(folder.iterdir())[0] for folder in sorted((DEMO_DATA / "val").iterdir())][:count]


@pytest.fixture(scope="module")
def net(randomize_bn: Callable[..., nn.Module]) -> nn.Module:
    """Inception-v3 at 1/4 width for 107 px input, 10 classes, non-trivial BN statistics."""
    torch.manual_seed(0)
    model = randomize_bn(create_model("inception_v3", width=0.25, num_classes=10)).eval()
    model.preprocessing = Preprocessing(input_size=SIZE)
    return model


@pytest.fixture(scope="module")
def cache(net: nn.Module, engine_cache: Path) -> Path:
    """The session's cache folder (conftest), already holding the network's export: made once, used by every
    test here, the commands included (a model folder of the same weights hashes the same)."""
    path, temp = onnx_export(net, input_size=SIZE, cache=engine_cache)
    assert temp is None and path.parent == engine_cache
    return engine_cache


@pytest.fixture(scope="module")
def images(net: nn.Module) -> torch.Tensor:
    transform = eval_transform(net.preprocessing)
    return torch.stack([transform(read_image(p)) for p in demo_images()])


def test_auto_picks_the_fastest_installed_engine_and_never_bf16() -> None:
    expected = (
        "openvino" if engine_installed("openvino") else "onnxruntime" if engine_installed("onnxruntime") else "torch"
    )
    assert choose_engine("auto", device="cpu") == expected
    assert choose_engine("auto", device="cuda") == "torch"  # a device name: no GPU is needed to decide
    assert choose_engine("torch", device="cpu") == "torch"
    if bf16_supported(torch.device("cpu")):
        assert choose_engine("auto", dtype="bf16", device="cpu") == ("openvino" if expected == "openvino" else "torch")
    else:
        with pytest.raises(ValueError, match=r"bf16 needs AVX512-BF16 or AMX.*emulated.*use --dtype fp32"):
            choose_engine("auto", dtype="bf16", device="cpu")


def test_engine_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="runs on the CPU, not on cuda; use --device cpu, or --engine torch"):
        choose_engine("openvino", device="cuda")
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'; choose one of: auto, torch"):
        choose_engine("tensorrt")
    with pytest.raises(ValueError, match="fp16 inference needs a CUDA device"):
        choose_engine("torch", dtype="fp16", device="cpu")
    if engine_installed("onnxruntime") and bf16_supported(torch.device("cpu")):
        with pytest.raises(ValueError, match=r"use --engine openvino \(or torch\) for bf16"):
            choose_engine("onnxruntime", dtype="bf16")
    assert issubclass(EngineUnavailable, ValueError)  # the command line prints it as `error: ...`


@needs_engines
@pytest.mark.parametrize("engine", ["torch", *CPU_ENGINES])
def test_fp32_engines_compute_the_eager_logits(engine: str, net: nn.Module, cache: Path) -> None:
    fast = inference_network(net, engine, input_size=SIZE, cache=cache)
    assert fast.engine == engine and fast.precision == "fp32" and not fast.training
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, got = net(x), fast(x)
    assert expected.abs().max() > 0.1  # logits of magnitude ~1: an absolute tolerance means something
    assert got.dtype == torch.float32 and (got - expected).abs().max() < 1e-4
    with torch.inference_mode():  # another batch size: OpenVINO compiles the new shape
        assert (fast(x[:1]) - expected[:1]).abs().max() < 1e-4


@pytest.mark.slow  # exporting a residual network takes ~15 s on 2 cores
@needs_engines
def test_residual_network_on_every_engine(randomize_bn: Callable[..., nn.Module], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomize_bn(create_model("inception_resnet_v2", width=0.25, num_classes=10)).eval()
    x = torch.randn(2, 3, 139, 139)
    with torch.inference_mode():
        expected = model(x)
        for engine in ("torch", *CPU_ENGINES):
            got = inference_network(model, engine, input_size=139, cache=tmp_path)(x)
            # 40 residual sums make logits of ~10 here; float32 rounding grows with them, so the bound does too
            assert (got - expected).abs().max() < 1e-4 * max(1.0, expected.abs().max().item()), engine


@needs_engines
def test_the_export_is_cached_by_weights(net: nn.Module, cache: Path) -> None:
    lines: list[str] = []
    inference_network(net, "onnxruntime", input_size=SIZE, cache=cache, log=lines.append)
    assert lines == [
        f"using the ONNX export {cache / f'inception_v3-{SIZE}-{network_digest(net, input_size=SIZE)}.onnx'}"
    ]
    changed = create_model("inception_v3", width=0.25, num_classes=10)
    changed.load_state_dict(net.state_dict())
    assert network_digest(changed, input_size=SIZE) == network_digest(net, input_size=SIZE)
    with torch.no_grad():
        changed.head.fc.bias[0] += 1.0
    assert network_digest(changed, input_size=SIZE) != network_digest(net, input_size=SIZE)
    assert network_digest(net, input_size=SIZE + 8) != network_digest(net, input_size=SIZE)


@needs_engines
def test_an_uncached_export_goes_when_the_network_does(net: nn.Module) -> None:
    fast = inference_network(net, "onnxruntime", input_size=SIZE, cache=False)
    folder = fast.onnx_file.parent
    assert fast.onnx_file.is_file() and folder.name.startswith("inceptionnet-onnx-")
    del fast
    gc.collect()
    assert not folder.exists()


@needs_engines
def test_an_engine_network_stands_for_the_network(net: nn.Module, cache: Path) -> None:
    net.class_names = tuple(f"c{i}" for i in range(10))
    try:
        fast = inference_network(net, "openvino", input_size=SIZE, cache=cache)
    finally:
        net.class_names = None
    assert isinstance(fast, EngineNetwork) and fast.num_classes == 10 and fast.class_names[3] == "c3"
    assert fast.preprocessing == net.preprocessing and fast.input_size == SIZE and fast.model_name == "inception_v3"
    assert describe_engine(fast) == f"openvino, fp32, {torch.get_num_threads()} threads (inception_v3 at 107x107)"
    assert (
        inference_network(fast) is fast and inference_network(fast, "openvino", dtype="fp32") is fast
    )  # already there
    with pytest.raises(ValueError, match="already runs on openvino in fp32; start again from the original network"):
        inference_network(fast, "onnxruntime")
    with pytest.raises(ValueError, match=r"exported for 107x107 input, got 115x115; .* input_size=115"):
        fast(torch.zeros(1, 3, 115, 115))
    with pytest.raises(ValueError, match="smaller than the 75x75 minimum"):
        fast(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"inference_network takes a network of inceptionnet\.create_model"):
        inference_network(nn.Linear(2, 2))


def test_torch_engine_is_the_fused_network(net: nn.Module) -> None:
    fast = inference_network(net, "torch", device="cpu")
    assert isinstance(fast, TorchNetwork) and fast.network.model_name == "inception_v3"
    assert fast.network.stem.conv1a.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert net.stem.conv1a.bn.training is False  # the argument is left as it was


@needs_bf16
@needs_engines
@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_bf16_keeps_the_top1_class(engine: str, net: nn.Module, cache: Path, images: torch.Tensor) -> None:
    fast = inference_network(net, engine, dtype="bf16", input_size=SIZE, cache=cache)
    assert fast.precision == "bf16"
    with torch.inference_mode():
        expected, got = net(images), fast(images)
    assert got.dtype == torch.float32
    # on these images the top two fp32 logits are >= 0.03 apart; bf16 moves logits by < 0.005 here
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


# The commands: the same classes on every engine, and the engine named


@pytest.fixture(scope="module")
def model_folder(net: nn.Module, cache: Path, tmp_path_factory: pytest.TempPathFactory, make_image_folder) -> tuple:
    """The test network saved as a model folder named by the 10 demo classes, and a folder of their images."""
    root = tmp_path_factory.mktemp("engines-cli")
    data = make_image_folder(root / "data", classes=10, train=0, val=1)
    names = sorted(p.name for p in (data / "val").iterdir())
    save_model_folder(root / "model", net, class_names=names)
    return data / "val", root / "model"


@needs_engines
def test_predict_gives_the_same_classes_on_every_engine(model_folder, tmp_path: Path, capsys) -> None:
    images, model = model_folder
    top1 = {}
    for engine in ("torch", *CPU_ENGINES):
        report = tmp_path / f"{engine}.json"
        assert main(["predict", str(images), "--model", str(model), "--engine", engine, "--json", str(report)]) == 0
        assert f"engine: {engine}, fp32" in capsys.readouterr().err
        result = json.loads(report.read_text())
        assert result["engine"] == engine and result["device"] == "cpu"
        top1[engine] = [r["top"][0]["index"] for r in result["results"]]
    assert len(top1["torch"]) == 10
    assert top1["onnxruntime"] == top1["torch"] and top1["openvino"] == top1["torch"]
    # the library gives what the command gives
    assert [r.top[0].index for r in predict([images], model=str(model), engine="openvino")] == top1["torch"]


@needs_engines
def test_eval_gives_the_same_errors_on_every_engine(model_folder, tmp_path: Path, capsys) -> None:
    images, model = model_folder
    errors = {}
    for engine in ("torch", *CPU_ENGINES):
        report = tmp_path / f"{engine}.json"
        args = ["eval", "--data", str(images), "--model", str(model), "--workers", "0", "--batch-size", "4"]
        assert main([*args, "--engine", engine, "--json", str(report)]) == 0
        assert f"engine: {engine}, fp32" in capsys.readouterr().err
        result = json.loads(report.read_text())
        assert result["config"]["members"][0]["engine"] == engine
        (score,) = result["results"]
        assert score["images"] == 10
        errors[engine] = score["top1_correct"], score["top1_error"]
    assert errors["onnxruntime"] == errors["torch"] and errors["openvino"] == errors["torch"]
    assert main(["eval", "--data", str(images), "--model", str(model), "--engine", "openvino", "--device", "cuda"]) == 2
    assert "the openvino engine runs on the CPU, not on cuda; use --device cpu" in capsys.readouterr().err
