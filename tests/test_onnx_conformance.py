"""Every ONNX file the package writes is a valid ONNX model for any runtime: `onnx.checker` (full check) and
strict, type-checked shape inference accept it, and onnx's reference evaluator (the operators as the
standard defines them, in numpy) computes what PyTorch computes; the int8 file what ONNX Runtime computes.

The files: `export --format onnx` (batch 1 and --dynamic-batch), `--with-preprocessing`, the ONNX file of the
Triton repository (`--format triton`) and the int8 folder's file (`inceptionnet quantize`), all of one
eighth-width Inception-v3 at 75 px: the reference evaluator is slow, so the network and the batch are tiny.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inceptionnet import Preprocessing, create_model
from inceptionnet.cli import main
from inceptionnet.export.formats import DEFAULT_TOLERANCE, InferenceNetwork
from inceptionnet.export.preprocessing import python_probabilities
from inceptionnet.models import InceptionNetwork
from inceptionnet.weights import save_weights

pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx.reference import ReferenceEvaluator  # noqa: E402

# slow (about 35 s: every kind of export, then the reference evaluator); .ci/run runs it
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

SIZE = 75
CLASSES = ("cat", "dog", "fox")
PIXELS = ("with-preprocessing", "triton")  # the files that take uint8 pixels and give probabilities
DYNAMIC = ("onnx-dynamic", "triton", "int8")  # the files with a symbolic batch dimension: checked on 2 images
KINDS = ("onnx", "onnx-dynamic", "with-preprocessing", "triton", "int8")


@pytest.fixture(scope="module")
def network(randomize_bn: Callable[..., nn.Module]) -> InceptionNetwork:
    torch.manual_seed(0)
    model = create_model("inception_v3", num_classes=len(CLASSES), width=0.125)
    model.preprocessing, model.class_names = Preprocessing(input_size=SIZE), CLASSES
    return randomize_bn(model).eval()


@pytest.fixture(scope="module")
def files(
    network: InceptionNetwork, tmp_path_factory: pytest.TempPathFactory, make_image_folder: Callable[..., Path]
) -> dict[str, Path]:
    """Each kind of ONNX file, written by the commands users run."""
    tmp = tmp_path_factory.mktemp("conformance")
    weights = str(save_weights(network, tmp / "net.safetensors"))
    export = ["export", weights, "--input-size", str(SIZE)]
    assert main([*export, "--format", "onnx", "--output", str(tmp / "plain.onnx")]) == 0
    assert main([*export, "--format", "onnx", "--dynamic-batch", "--output", str(tmp / "dynamic.onnx")]) == 0
    assert main([*export, "--format", "onnx", "--with-preprocessing", "--output", str(tmp / "pixels.onnx")]) == 0
    assert main([*export, "--format", "triton", "--output", str(tmp / "repository")]) == 0
    # 8 calibration images and no agreement minimum: a random network's int8 file, written as users' are (GPTQ)
    images = make_image_folder(tmp / "images", classes=2, train=4, val=1) / "train"
    quantize = ["quantize", weights, "--calibration", str(images), "--images", "8", "--min-agreement", "0"]
    assert main([*quantize, "--output", str(tmp / "int8")]) == 0
    (triton,) = (tmp / "repository").glob("*/1/model.onnx")
    (int8,) = (tmp / "int8").glob("*.onnx")
    return {
        "onnx": tmp / "plain.onnx",
        "onnx-dynamic": tmp / "dynamic.onnx",
        "with-preprocessing": tmp / "pixels.onnx",
        "triton": triton,
        "int8": int8,
    }


def _inputs(kind: str) -> np.ndarray:
    """A batch for the file of `kind`: uint8 NHWC pixels or normalised NCHW floats, 2 images where the batch is
    symbolic (so the reference evaluator runs it with another size than any traced), else 1."""
    rng = np.random.default_rng(7)
    batch = 2 if kind in DYNAMIC else 1
    if kind in PIXELS:
        return rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8)
    return rng.standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)


def _reference(path: Path, inputs: np.ndarray) -> np.ndarray:
    model = onnx.load(str(path))
    (output,) = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: inputs})
    return output


def _onnxruntime(path: Path, inputs: np.ndarray, *, optimized: bool) -> np.ndarray:
    options = ort.SessionOptions()
    if not optimized:  # each node run as the file states it, no fused kernels
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


@pytest.mark.parametrize("kind", KINDS)
def test_the_checker_and_strict_shape_inference_accept_the_file(files: dict[str, Path], kind: str) -> None:
    model = onnx.load(str(files[kind]))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    (output,) = inferred.graph.output
    dims = [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim]
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims == ["batch" if kind in DYNAMIC else 1, len(CLASSES)]


@pytest.mark.parametrize("kind", ["onnx", "onnx-dynamic", "with-preprocessing", "triton"])
def test_the_reference_evaluator_computes_what_pytorch_computes(
    files: dict[str, Path], network: InceptionNetwork, kind: str
) -> None:
    """The exporter's own tolerance: the file's BatchNorm is folded into its convolutions, which rounds float32
    otherwise than the network (measured: about 1e-7); logits are compared relative to their scale, the
    probabilities of the pixel files (scale 1) absolutely."""
    inputs = _inputs(kind)
    got = _reference(files[kind], inputs)
    eager = InferenceNetwork(network).eval()
    with torch.no_grad():
        if kind in PIXELS:
            pixels = torch.from_numpy(inputs)
            expected = python_probabilities(eager, pixels, network.preprocessing, multi_label=False).numpy()
        else:
            expected = eager(torch.from_numpy(inputs)).numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    assert got.shape == expected.shape == (len(inputs), len(CLASSES))
    assert np.abs(got - expected).max() <= DEFAULT_TOLERANCE * scale


def test_the_reference_evaluator_computes_what_onnxruntime_computes_in_int8(files: dict[str, Path]) -> None:
    """int8 differs from float32 by its quantization, so the reference is ONNX Runtime on the same file.

    Run node by node (no optimisation), ONNX Runtime does the standard's arithmetic (QuantizeLinear rounds
    half to even, DequantizeLinear and the float operators between them), as the reference evaluator does:
    they agree to float32 rounding (1e-5 of the logits' scale; measured: equal). Optimised, it fuses each
    DequantizeLinear -> Conv -> QuantizeLinear into an integer convolution that requantizes in its own
    arithmetic, which may put an activation near a rounding boundary one quantization step away; allowed:
    the classifier's (float) inputs each one step of their quantization away (`_one_step_of_features`,
    about 0.02 here; measured: about 0.001).
    """
    inputs = _inputs("int8")
    got = _reference(files["int8"], inputs)
    exact = _onnxruntime(files["int8"], inputs, optimized=False)
    fused = _onnxruntime(files["int8"], inputs, optimized=True)
    scale = float(np.abs(exact).max())
    assert got.shape == exact.shape == (len(inputs), len(CLASSES)) and scale > 0
    assert np.abs(got - exact).max() <= 1e-5 * scale
    assert np.abs(got - fused).max() <= _one_step_of_features(onnx.load(str(files["int8"])))


def _one_step_of_features(model: onnx.ModelProto) -> float:
    """The most a logit moves when every input of the classifier (the last Gemm, kept in float32) moves by one
    step of the quantization it comes from (the DequantizeLinear above it): the step times the largest row sum
    of |weights|."""
    produced = {output: node for node in model.graph.node for output in node.output}
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    gemm = [node for node in model.graph.node if node.op_type == "Gemm"][-1]
    source = produced[gemm.input[0]]
    while source.op_type != "DequantizeLinear":  # the pooling and reshape between them
        source = produced[source.input[0]]
    transposed = any(a.name == "transB" and a.i == 1 for a in gemm.attribute)
    rows = np.abs(weights[gemm.input[1]]).sum(axis=1 if transposed else 0)
    return float(weights[source.input[1]].max() * rows.max())
