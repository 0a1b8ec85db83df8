"""ONNX with the preprocessing inside (uint8 pixels in, probabilities out) and the Triton model repository,
its Python backend's model.py included."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

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


def _triton_repository(network: InceptionNetwork, tmp_path: Path, backend: str) -> Path:
    """`export --format triton` of `network` at SIZE, max batch 16; the model's folder."""
    weights = save_weights(network, tmp_path / "net.safetensors")
    argv = ["export", str(weights), "--format", "triton", "--output", str(tmp_path / "repo"), "--max-batch", "16"]
    assert main([*argv, "--input-size", str(SIZE), "--triton-backend", backend]) == 0
    return tmp_path / "repo" / "inception_v3"


@pytest.fixture(scope="module")
def ort_repository(network: InceptionNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _triton_repository(network, tmp_path_factory.mktemp("triton-ort"), "onnxruntime")


@pytest.fixture(scope="module")
def python_repository(network: InceptionNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _triton_repository(network, tmp_path_factory.mktemp("triton-python"), "python")


def _check_triton_config(folder: Path, *, backend: str) -> Any:
    """config.pbtxt parsed with Triton's own protobuf and checked against the ONNX file's inputs and outputs."""
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    graph = onnx.load(str(folder / "1" / "model.onnx")).graph
    assert (config.name, config.backend, config.max_batch_size) == ("inception_v3", backend, 16)
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
    return config


def test_triton_repository_matches_its_onnx_file(network: InceptionNetwork, ort_repository: Path) -> None:
    _check_triton_config(ort_repository, backend="onnxruntime")
    pixels = _pixels(3)
    assert np.abs(_run(ort_repository / "1" / "model.onnx", pixels) - _expected(network, pixels)).max() <= 1e-4


def test_triton_options_are_checked(network: InceptionNetwork, tmp_path: Path) -> None:
    weights = str(save_weights(network, tmp_path / "net.safetensors"))
    argv = ["export", weights, "--format", "triton", "--output", str(tmp_path / "r")]
    assert main([*argv, "--triton-backend", "openvino", "--triton-device", "gpu"]) == 2
    assert main([*argv, "--triton-backend", "python", "--triton-device", "gpu"]) == 2
    assert main([*argv, "--max-batch", "0"]) == 2
    assert main(["export", weights, "--format", "torchscript", "--with-preprocessing"]) == 2


# The Python backend's model.py, run outside Triton: triton_python_backend_utils is replaced by the few
# names model.py uses. What a real Triton does with the repository is `make triton-check`'s to show.


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


def _python_model(folder: Path, monkeypatch: pytest.MonkeyPatch, log: list[str]) -> ModuleType:
    """The repository's 1/model.py imported with a stand-in for triton_python_backend_utils (a request is a
    list of _Tensor, a response the list of its output tensors)."""
    utils = SimpleNamespace(
        Tensor=_Tensor,
        InferenceResponse=lambda output_tensors: output_tensors,
        get_input_tensor_by_name=lambda request, name: next(t for t in request if t.name == name),
        Logger=SimpleNamespace(log_info=log.append),
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", utils)  # what `import` then finds
    spec = importlib.util.spec_from_file_location("triton_model", folder / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _initialize_args(folder: Path, config: Any, kind: str = "CPU") -> dict[str, str]:
    """What Triton passes to initialize: the model's configuration as JSON, its instance, its folder."""
    json_format = pytest.importorskip("google.protobuf.json_format")
    return {
        "model_config": json_format.MessageToJson(config, preserving_proto_field_name=True),
        "model_instance_kind": kind,
        "model_instance_name": "inception_v3_0_0",
        "model_instance_device_id": "0",
        "model_repository": str(folder),
        "model_version": "1",
        "model_name": "inception_v3",
    }


def test_triton_python_backend_repository(python_repository: Path, ort_repository: Path) -> None:
    config = _check_triton_config(python_repository, backend="python")
    assert not config.default_model_filename  # the Python backend's default: model.py
    code = (python_repository / "1" / "model.py").read_text()
    compile(code, "model.py", "exec")
    assert code == resources.files("inceptionnet").joinpath("assets/triton/model.py").read_text()
    assert len((python_repository / "labels.txt").read_text().splitlines()) == config.output[0].dims[0]
    # one contract for clients: the same configuration as ONNX Runtime's but for the backend
    ours = (python_repository / "config.pbtxt").read_text().replace('backend: "python"', 'backend: "onnxruntime"')
    assert ours == (ort_repository / "config.pbtxt").read_text()


@pytest.mark.parametrize("engine", ["ONNX Runtime", "OpenVINO"])
def test_triton_python_model_runs_each_request_of_a_batch(
    network: InceptionNetwork, python_repository: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    folder = python_repository
    if engine == "OpenVINO":
        pytest.importorskip("openvino")
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # only OpenVINO installed: `import onnxruntime` fails
    log: list[str] = []
    model = _python_model(folder, monkeypatch, log).TritonPythonModel()
    model.initialize(_initialize_args(folder, _check_triton_config(folder, backend="python")))
    assert len(log) == 1 and engine in log[0]
    batches = [_pixels(n, seed=n) for n in (1, 3, 2)]  # three requests Triton grouped into one execute call
    responses = model.execute([[_Tensor("pixels", b.numpy())] for b in batches])
    assert len(responses) == len(batches)
    for (answer,), pixels in zip(responses, batches, strict=True):
        assert answer.name == "probabilities" and answer.array.shape == (len(pixels), 4)
        assert np.abs(answer.array - _run(folder / "1" / "model.onnx", pixels)).max() <= 1e-5
        assert np.abs(answer.array - _expected(network, pixels)).max() <= 1e-4
    model.finalize()


def test_triton_python_model_says_what_it_needs(python_repository: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = python_repository
    config = _check_triton_config(folder, backend="python")
    model = _python_model(folder, monkeypatch, []).TritonPythonModel()
    with pytest.raises(ValueError, match=r"runs its ONNX file on the CPU.*KIND_CPU"):
        model.initialize(_initialize_args(folder, config, kind="GPU"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match="needs onnxruntime or openvino in Triton's Python environment"):
        model.initialize(_initialize_args(folder, config))
