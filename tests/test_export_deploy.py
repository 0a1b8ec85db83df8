"""ONNX with the preprocessing inside (uint8 pixels in, probabilities out) and the Triton model repository."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.export.formats import InferenceNetwork, read_export_metadata
from inceptionnet.export.preprocessing import export_onnx_with_preprocessing, python_probabilities
from inceptionnet.export.runtimes import onnx_runner
from inceptionnet.models import InceptionNetwork
from inceptionnet.weights import save_weights

pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZE = 75


@pytest.fixture(scope="module")
def network(randomize_bn: Callable[..., nn.Module]) -> InceptionNetwork:
    model = create_model("inception_v3", num_classes=4, width=0.125)
    model.class_names = ("cat", "dog", "fox", "owl")
    return randomize_bn(model).eval()


def _pixels(n: int, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (n, SIZE, SIZE, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _run(path: Path, pixels: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: pixels.numpy()})[0]


def _expected(model: nn.Module, pixels: torch.Tensor, multi: bool = False) -> np.ndarray:
    with torch.no_grad():
        eager = InferenceNetwork(model).eval()
        return python_probabilities(eager, pixels, model.preprocessing, multi_label=multi).numpy()


def test_onnx_with_preprocessing_takes_pixels_and_gives_probabilities(
    network: InceptionNetwork, tmp_path: Path
) -> None:
    weights = save_weights(network, tmp_path / "net.safetensors")
    out = tmp_path / "pixels.onnx"
    argv = ["export", str(weights), "--format", "onnx", "--with-preprocessing", "--dynamic-batch"]
    assert main([*argv, "--input-size", str(SIZE), "--output", str(out)]) == 0
    meta = read_export_metadata(out)
    assert (meta["input_format"], meta["output"], meta["input_size"]) == ("uint8_nhwc", "probabilities", SIZE)
    (given,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_inputs()
    assert given.type == "tensor(uint8)" and given.shape[1:] == [SIZE, SIZE, 3]
    pixels = _pixels(5)
    got = _run(out, pixels)
    assert got.shape == (5, 4) and np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(got - _expected(network, pixels)).max() <= 1e-4
    with pytest.raises(ValueError, match="exported with --with-preprocessing takes uint8 pixels"):
        onnx_runner(out, "onnxruntime")


def test_a_multi_label_network_ends_in_a_sigmoid(network: InceptionNetwork, tmp_path: Path) -> None:
    multi = create_model("inception_v3", num_classes=4, width=0.125)
    multi.load_state_dict(network.state_dict())
    multi.label_mode, multi.thresholds = "multi", (0.5,) * 4
    result = export_onnx_with_preprocessing(multi.eval(), tmp_path / "multi.onnx", input_size=SIZE)
    pixels = _pixels(1)
    got = _run(result.path, pixels)
    assert np.abs(got - _expected(multi, pixels, multi=True)).max() <= 1e-4
    assert not np.allclose(got.sum(), 1.0, atol=1e-3)


def test_triton_repository_matches_its_onnx_file(network: InceptionNetwork, tmp_path: Path) -> None:
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    weights = save_weights(network, tmp_path / "net.safetensors")
    repo = tmp_path / "repo"
    argv = ["export", str(weights), "--format", "triton", "--output", str(repo), "--max-batch", "16"]
    assert main([*argv, "--input-size", str(SIZE)]) == 0
    folder = repo / "inception_v3"
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    graph = onnx.load(str(folder / "1" / "model.onnx")).graph
    assert (config.name, config.backend, config.max_batch_size) == ("inception_v3", "onnxruntime", 16)
    types = {onnx.TensorProto.UINT8: model_config_pb2.TYPE_UINT8, onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32}
    for ours, theirs in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in ours] == [t.name for t in theirs]
        for t, v in zip(ours, theirs, strict=True):
            dims = v.type.tensor_type.shape.dim
            assert t.data_type == types[v.type.tensor_type.elem_type]
            assert dims[0].dim_param and list(t.dims) == [d.dim_value for d in dims[1:]]  # batch: Triton's
    assert list(config.input[0].dims) == [SIZE, SIZE, 3] and list(config.output[0].dims) == [4]
    assert config.output[0].label_filename == "labels.txt"
    assert (folder / "labels.txt").read_text().splitlines() == ["cat", "dog", "fox", "owl"]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    pixels = _pixels(3)
    assert np.abs(_run(folder / "1" / "model.onnx", pixels) - _expected(network, pixels)).max() <= 1e-4


def test_triton_options_are_checked(network: InceptionNetwork, tmp_path: Path) -> None:
    weights = str(save_weights(network, tmp_path / "net.safetensors"))
    argv = ["export", weights, "--format", "triton", "--output", str(tmp_path / "r")]
    assert main([*argv, "--triton-backend", "openvino", "--triton-device", "gpu"]) == 2
    assert main([*argv, "--max-batch", "0"]) == 2
    assert main(["export", weights, "--format", "torchscript", "--with-preprocessing"]) == 2
