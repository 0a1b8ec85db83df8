"""int8 quantization: the folder, loading it on each engine, closeness to fp32, bad inputs, the command."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from inceptionnet import Preprocessing, create_model
from inceptionnet.atomic import atomic_write
from inceptionnet.cli import main
from inceptionnet.cpu import cpu_features
from inceptionnet.data import eval_transform, read_image
from inceptionnet.export.runtimes import ENGINES, EngineNetwork, engine_installed
from inceptionnet.quantization.calibration import calibration_files, read_calibration
from inceptionnet.quantization.int8folder import CONFIG_FILE, FORMAT, MODEL_FILE, WEIGHT_RANGES, is_quantized
from inceptionnet.quantization.quantize import LowAgreement, QuantizeResult, load_quantized, quantize_model
from inceptionnet.weights import save_model_folder

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not engine_installed("onnxruntime"), reason="quantizing needs onnxruntime"),
]

CLASSES = ("airplane", "automobile", "bird")
SIZE = 107  # small enough to be fast, large enough that every reduction keeps a 2x2 grid or more


def _tiny_model(images: torch.Tensor) -> torch.nn.Module:
    """Inception-v3 at 1/8 width whose classifier reads the top principal directions of its features on `images`.

    A randomly initialised classifier tends to give every image the same class, which top-1 agreement
    could not tell from a broken network; reading the features' largest variations, the predicted
    class varies from image to image and the margins between classes are set by real differences
    between the images, as a trained classifier's would be.
    """
    torch.manual_seed(0)
    model = create_model("inception_v3", width=0.125, num_classes=len(CLASSES)).eval()
    model.preprocessing = dataclasses.replace(model.preprocessing, input_size=SIZE)
    model.class_names = CLASSES
    with torch.no_grad():
        features = model.forward_head(model.forward_features(images), pre_logits=True)
        centred = features - features.mean(0)
        directions = torch.linalg.svd(centred, full_matrices=False).Vh[: len(CLASSES)]
        model.head.fc.weight.copy_(directions / centred.std())
        model.head.fc.bias.copy_(-(features.mean(0) @ model.head.fc.weight.T))
    return model


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_image_folder: Callable[..., Path]) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"), classes=3, train=6, val=2, corrupt=2)


@pytest.fixture(scope="module")
def model(data: Path) -> torch.nn.Module:
    return _tiny_model(_images(data / "train", Preprocessing(input_size=SIZE)))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory, data: Path, model: torch.nn.Module) -> QuantizeResult:
    # minmax: no calibration image is clipped, so their logits differ from fp32 by rounding alone (the
    # default, "average", clips the extremes of a few images by design; the command test runs it)
    return quantize_model(model, data / "train", tmp_path_factory.mktemp("q") / "int8", images=64, method="minmax")


@pytest.fixture(scope="module")
def vnni_folder(
    tmp_path_factory: pytest.TempPathFactory, data: Path, model: torch.nn.Module, quantized: QuantizeResult
) -> QuantizeResult:
    """The folder with 8-bit weights, made for CPUs with VNNI whatever this one has (`quantized` on a VNNI CPU)."""
    if quantized.target_cpu == "vnni":
        return quantized
    out = tmp_path_factory.mktemp("vnni") / "int8"
    return quantize_model(model, data / "train", out, images=64, method="minmax", target_cpu="vnni")


def _images(folder: Path, pre: Preprocessing) -> torch.Tensor:
    """The readable images of `folder`, prepared for the network."""
    tf = eval_transform(pre)
    return torch.stack([tf(read_image(p)) for p in sorted(folder.rglob("*.jpg")) if not p.name.startswith("corrupt")])


def test_writes_a_recognised_folder_with_its_record(quantized: QuantizeResult, data: Path) -> None:
    folder = quantized.folder
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, MODEL_FILE]
    assert is_quantized(folder) and is_quantized(folder / MODEL_FILE)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["format"] == FORMAT
    assert config["model_name"] == "inception_v3" and config["class_names"] == list(CLASSES)
    assert config["model_options"]["width"] == 0.125
    assert config["preprocessing"]["input_size"] == SIZE
    assert config["calibration"] == {"method": "minmax", "images": 18, "skipped": 2, "seed": 0}
    assert len(quantized.fp32_nodes) == 1 and config["quantization"]["fp32_nodes"] == list(quantized.fp32_nodes)
    assert quantized.rounding == config["quantization"]["rounding"] == "gptq"  # the default
    assert config["check"]["images"] == 18 and config["check"]["engine"] == quantized.check_engine
    assert config["check"]["cpu"] == cpu_features().describe()  # the machine the check ran on
    # auto: the weights this CPU computes exactly (inceptionnet.cpu)
    target = "any" if cpu_features().int8_saturates else "vnni"
    record = config["quantization"]
    assert (
        (record["target_cpu"], record["weight_range"])
        == (target, WEIGHT_RANGES[target])
        == (
            quantized.target_cpu,
            quantized.weight_range,
        )
    )
    assert record["quantized_on"] == cpu_features().describe() and record["made_for"]
    assert (
        max(np.abs(v.astype(int)).max() for k, v in _conv_weights(folder).items() if v.dtype == np.int8)
        == (WEIGHT_RANGES[target])
    )


def test_corrupt_calibration_images_are_skipped_and_counted(
    quantized: QuantizeResult, data: Path, model: torch.nn.Module
) -> None:
    assert (quantized.calibration_images, quantized.skipped) == (18, 2)  # 3 classes x 6 readable, 2 corrupt
    first = sorted(p for p in (data / "train").iterdir())[0]
    files = calibration_files([first / "corrupt0.jpg", first / "corrupt1.jpg", *sorted(first.glob("0*.jpg"))[:2]])
    batch, skipped = read_calibration(files, model, images=10)  # a list of files works as a folder does
    assert batch.shape == (2, 3, SIZE, SIZE) and skipped == 2
    assert read_calibration(calibration_files(data / "train"), model, images=5)[0].shape[0] == 5


def test_a_folder_of_links_to_class_folders_calibrates(tmp_path: Path, data: Path) -> None:
    """As training reads it (torchvision's make_dataset follows links): each linked class folder's images."""
    (tmp_path / "train").mkdir()
    for folder in sorted((data / "train").iterdir()):
        (tmp_path / "train" / folder.name).symlink_to(folder, target_is_directory=True)
    assert [p.relative_to(tmp_path) for p in calibration_files(tmp_path / "train")] == [
        Path("train") / p.relative_to(data / "train") for p in calibration_files(data / "train")
    ]


# int8 activations have 256 levels per tensor: each quantized layer adds an error of up to half a step
# (range / 510), and ~95 layers compound it (measured here: 0.6-1.1% of the logits' spread). 5% leaves room
# for that and still fails for a wrong scale, layout or preprocessing (errors of the order of the spread).
LOGIT_TOLERANCE = 0.05


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_runs_the_folder_close_to_fp32(
    quantized: QuantizeResult, data: Path, model: torch.nn.Module, engine: str
) -> None:
    if not engine_installed(engine):
        pytest.skip(f"{engine} is not installed")
    network = load_quantized(quantized.folder, engine=engine, threads=1)
    assert isinstance(network, EngineNetwork) and (network.engine, network.precision) == (engine, "int8")
    assert (network.model_name, network.class_names, network.num_classes) == ("inception_v3", CLASSES, 3)
    assert network.preprocessing == model.preprocessing
    images = _images(data / "train", model.preprocessing)  # the calibration images
    with torch.no_grad():
        expected = model(images)
    got = network(images)
    assert len(set(expected.argmax(1).tolist())) > 1  # agreement means something
    spread = (expected.max() - expected.min()).item()
    assert (got - expected).abs().max().item() <= LOGIT_TOLERANCE * spread
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() >= 15 / 18  # a near tie may flip


def test_the_check_compares_with_fp32(quantized: QuantizeResult, data: Path, model: torch.nn.Module) -> None:
    with torch.no_grad():
        expected = model(_images(data / "train", model.preprocessing))
    spread = (expected.max() - expected.min()).item()
    assert quantized.check_images == 18
    assert quantized.top1_agreement is not None and quantized.top1_agreement >= 15 / 18
    assert quantized.max_logit_diff is not None and 0 < quantized.max_logit_diff <= LOGIT_TOLERANCE * spread


def _conv_weights(folder: Path) -> dict[str, np.ndarray]:
    """The int8 weights and per-channel scales (name -> array) of the folder's QDQ file."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(folder / MODEL_FILE)).graph
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith(("_quantized", "_scale"))}


def test_gptq_rounding_brings_the_outputs_closer_to_fp32(
    quantized: QuantizeResult, tmp_path: Path, data: Path, model: torch.nn.Module
) -> None:
    nearest = quantize_model(
        model, data / "train", tmp_path / "nearest", images=64, method="minmax", rounding="nearest", engine_check=None
    )
    assert json.loads((nearest.folder / CONFIG_FILE).read_text())["quantization"]["rounding"] == "nearest"
    ours, theirs = _conv_weights(quantized.folder), _conv_weights(nearest.folder)
    assert ours.keys() == theirs.keys()
    scales = [k for k in ours if k.endswith("_scale")]
    assert all(np.array_equal(ours[k], theirs[k]) for k in scales)  # same grid: only the integers differ
    ints = [k for k in ours if k.endswith("_quantized") and ours[k].dtype == np.int8]
    changed = sum(not np.array_equal(ours[k], theirs[k]) for k in ints)
    assert changed > len(ints) // 2 and all(np.abs(ours[k].astype(int)).max() <= 127 for k in ints)
    images = _images(data / "train", model.preprocessing)  # what GPTQ was calibrated on
    with torch.no_grad():
        expected = model(images)

    def error(folder: Path) -> float:
        return ((load_quantized(folder, engine="onnxruntime", threads=1)(images) - expected) ** 2).mean().item()

    assert error(quantized.folder) < error(nearest.folder)


def test_another_input_size_is_a_clear_error(quantized: QuantizeResult) -> None:
    with pytest.raises(ValueError, match=f"exported for {SIZE}x{SIZE} input, got 139x139"):
        load_quantized(quantized.folder, engine="onnxruntime")(torch.zeros(1, 3, 139, 139))


def test_auto_engine_prefers_openvino(quantized: QuantizeResult) -> None:
    expected = "openvino" if engine_installed("openvino") else "onnxruntime"
    assert load_quantized(quantized.folder).engine == expected == quantized.check_engine


def test_bad_calibration_folders_are_clear_errors(tmp_path: Path, model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        quantize_model(model, tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="holds no images"):
        quantize_model(model, tmp_path / "empty", tmp_path / "out")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="none of the 1 calibration images could be read"):
        quantize_model(model, tmp_path / "bad", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for a failed quantization


def test_bad_options_are_clear_errors(tmp_path: Path, data: Path, model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="unknown calibration method 'kl'; choose one of: average, minmax"):
        quantize_model(model, data / "train", tmp_path / "out", method="kl")
    with pytest.raises(ValueError, match="cannot keep"):
        quantize_model(model, data / "train", tmp_path / "out", keep_fp32=("stem",))
    with pytest.raises(ValueError, match="at least 1"):
        quantize_model(model, data / "train", tmp_path / "out", images=0)
    with pytest.raises(ValueError, match="unknown rounding 'stochastic'; choose one of: gptq, nearest"):
        quantize_model(model, data / "train", tmp_path / "out", rounding="stochastic")


def test_a_model_folder_is_not_quantized(tmp_path: Path, data: Path, model: torch.nn.Module) -> None:
    folder = save_model_folder(tmp_path / "fp32", model)
    assert not is_quantized(folder) and not is_quantized(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"is not an int8 folder.*inceptionnet quantize"):
        load_quantized(folder)
    with pytest.raises(ValueError, match=r"holds another config\.json"):
        quantize_model(model, data / "train", folder)  # never overwrites a model folder


def test_a_folder_without_its_model_file_is_a_clear_error(tmp_path: Path, quantized: QuantizeResult) -> None:
    (tmp_path / CONFIG_FILE).write_bytes((quantized.folder / CONFIG_FILE).read_bytes())
    with pytest.raises(ValueError, match=f"no {MODEL_FILE}"):
        load_quantized(tmp_path)


def test_command_quantizes_a_model_folder(
    tmp_path: Path, data: Path, model: torch.nn.Module, capsys: pytest.CaptureFixture[str]
) -> None:
    source = save_model_folder(tmp_path / "fp32", model)
    out = tmp_path / "int8"
    argv = ["quantize", str(source), "--calibration", str(data / "val"), "--output", str(out), "--images", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / MODEL_FILE}" in printed and "average calibration on 4 images" in printed
    bits = "8-bit weights for CPUs with VNNI or AMX" if cpu_features().vnni else "7-bit weights for any CPU"
    assert f"{bits}, rounded by gptq" in printed
    assert "top-1 agreement with fp32" in printed
    config = json.loads((out / CONFIG_FILE).read_text())
    assert (config["model_name"], config["class_names"], config["calibration"]["images"]) == (
        "inception_v3",
        list(CLASSES),
        4,
    )
    assert config["weights_name"] == str(source)


def test_command_errors_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", "inception_v3", "--calibration", str(tmp_path / "none")]) == 2
    assert "calibration folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["quantize", "--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "--calibration DIR" in printed and "--images N" in printed and "OpenVINO" in printed


def test_predict_eval_and_bench_run_the_folder(
    quantized: QuantizeResult, data: Path, model: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(quantized.folder)
    fp32 = save_model_folder(tmp_path / "fp32", model)
    assert main(["predict", str(data / "val"), "--model", folder, "--json", str(tmp_path / "p.json")]) == 0
    assert main(["predict", str(data / "val"), "--model", str(fp32), "--engine", "torch", "--json", "-"]) == 0
    assert "engine: openvino, int8" in capsys.readouterr().err
    int8 = json.loads((tmp_path / "p.json").read_text())
    assert int8["engine"] in ENGINES and int8["precision"] == "int8"
    labels = [r["top"][0]["label"] for r in int8["results"] if r["error"] is None]
    assert len(labels) == 6 and set(labels) <= set(CLASSES)  # its own class names

    assert main(["eval", "--data", str(data / "val"), "--model", folder, "--json", str(tmp_path / "e.json")]) == 0
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["images"] == 6 and scores["config"]["members"][0]["precision"] == "int8"

    bench = ["bench", "--int8", folder, "--batch-size", "1", "--iters", "1", "--warmup", "0"]
    assert main([*bench, "--reference", "onnxruntime", "--json", str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["config"]["input_size"] == SIZE and result["ours"]["dtype"] == "int8"
    assert result["speedups"][0]["reference"] == "onnxruntime"

    # What an int8 folder cannot do is an error that names the fix.
    for extra, message in ((["--engine", "torch"], "use --engine auto"), (["--dtype", "bf16"], "computes in int8")):
        assert main(["predict", str(data / "val"), "--model", folder, *extra]) == 2
        assert message in capsys.readouterr().err


def test_each_target_cpu_writes_its_weight_range(
    quantized: QuantizeResult, tmp_path: Path, data: Path, model: torch.nn.Module
) -> None:
    other = "any" if quantized.target_cpu == "vnni" else "vnni"
    written = quantize_model(model, data / "train", tmp_path / other, images=64, method="minmax", target_cpu=other)
    record = json.loads((written.folder / CONFIG_FILE).read_text())["quantization"]
    assert (record["target_cpu"], record["weight_range"], written.weight_range) == (other, *[WEIGHT_RANGES[other]] * 2)
    ints = [v for v in _conv_weights(written.folder).values() if v.dtype == np.int8]
    assert max(np.abs(v.astype(int)).max() for v in ints) == WEIGHT_RANGES[other]
    assert written.top1_agreement is not None and written.top1_agreement >= 15 / 18  # 7 or 8 bits: both close
    with pytest.raises(ValueError, match="unknown target CPU 'arm'; choose one of: auto, vnni, any"):
        quantize_model(model, data / "train", tmp_path / "x", target_cpu="arm")


def _poor_check(monkeypatch: pytest.MonkeyPatch, quantized: QuantizeResult, agreement: float, images: int) -> None:
    """quantize_model with its file-writing logic as it is, but the int8 file copied from `quantized` (no export,
    no calibration) and a check that reports `agreement` on `images` images."""
    import inceptionnet.quantization.quantize as quantize

    def copied(*args: object) -> tuple[str, ...]:
        atomic_write(args[3], quantized.model_file.read_bytes())  # _quantize's `output`
        return quantized.fp32_nodes

    def poor(*_args: object, **_kwargs: object) -> dict[str, object]:
        return {
            "engine": "openvino",
            "images": images,
            "cpu": "a CPU",
            "max_logit_diff": 9.0,
            "top1_agreement": agreement,
        }

    monkeypatch.setattr(quantize, "_quantize", copied)
    monkeypatch.setattr(quantize, "check_quantized", poor)


def test_a_low_agreement_writes_nothing_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data: Path, model: torch.nn.Module, quantized: QuantizeResult
) -> None:
    _poor_check(monkeypatch, quantized, 0.5, 18)
    out = tmp_path / "int8"
    with pytest.raises(LowAgreement, match=r"agrees with fp32 on 50\.0% of the top-1 classes of 18 check images"):
        quantize_model(model, data / "train", out, images=18)
    assert not out.exists()
    previous = tmp_path / "previous"  # an int8 folder being rewritten keeps its files
    previous.mkdir()
    for name in (CONFIG_FILE, MODEL_FILE):
        (previous / name).write_bytes((quantized.folder / name).read_bytes())
    with pytest.raises(LowAgreement, match="--min-agreement 0"):
        quantize_model(model, data / "train", previous, images=18)
    assert all((previous / n).read_bytes() == (quantized.folder / n).read_bytes() for n in (CONFIG_FILE, MODEL_FILE))
    written = quantize_model(model, data / "train", out, images=18, min_agreement=0)
    assert written.top1_agreement == 0.5 and is_quantized(out)
    assert json.loads((out / CONFIG_FILE).read_text())["check"]["top1_agreement"] == 0.5
    with pytest.raises(ValueError, match="--min-agreement is a fraction from 0"):
        quantize_model(model, data / "train", out, min_agreement=90)


def test_the_command_refuses_a_low_agreement(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    data: Path,
    model: torch.nn.Module,
    quantized: QuantizeResult,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _poor_check(monkeypatch, quantized, 0.75, 4)
    source = save_model_folder(tmp_path / "fp32", model)
    argv = ["quantize", str(source), "--calibration", str(data / "val"), "--images", "4"]
    assert main([*argv, "--output", str(tmp_path / "refused")]) == 2
    assert "below --min-agreement 0.9: nothing written" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert main([*argv, "--output", str(tmp_path / "kept"), "--min-agreement", "0.5"]) == 0
    assert "warning: the int8 network disagrees with fp32 on 25% of the check images" in capsys.readouterr().out


def test_8_bit_weights_narrowed_for_a_cpu_without_vnni(
    monkeypatch: pytest.MonkeyPatch, vnni_folder: QuantizeResult, data: Path, model: torch.nn.Module
) -> None:
    """A folder for VNNI CPUs opened where the int8 kernels would saturate: its weights narrowed to -64..64
    (ONNX Runtime here: it has no ISA switch and computes the narrowed file exactly on any CPU)."""
    folder = vnni_folder
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    host = cpu_features()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # what inceptionnet.cpu reads; the engines are loaded already
    lines: list[str] = []
    network = load_quantized(folder.folder, engine="onnxruntime", threads=1, log=lines.append)
    assert len(lines) == 1 and "has 8-bit weights, made for CPUs with VNNI or AMX" in lines[0]
    assert "narrowed to 7 bits (-64..64)" in lines[0] and "--target-cpu any" in lines[0]
    narrowed = _conv_weights(network.onnx_file.parent)
    original = _conv_weights(folder.folder)
    ints = [k for k, v in original.items() if v.dtype == np.int8]
    assert all(np.abs(narrowed[k].astype(int)).max() <= 64 for k in ints)
    assert all(
        np.allclose(narrowed[k.replace("_quantized", "_scale")], 2 * original[k.replace("_quantized", "_scale")])
        for k in ints
    )
    images = _images(data / "train", model.preprocessing)
    with torch.no_grad():
        expected = model(images)
    got = network(images)
    spread = (expected.max() - expected.min()).item()
    assert (got - expected).abs().max().item() <= LOGIT_TOLERANCE * spread
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() >= 15 / 18
    with pytest.warns(RuntimeWarning, match="narrowed to 7 bits"):  # no log: a warning says it
        load_quantized(folder.folder, engine="onnxruntime", threads=1)
    if host.vnni:  # a VNNI CPU runs the folder as it is
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
        assert load_quantized(folder.folder, engine="onnxruntime", log=lines.append).onnx_file == folder.model_file
        assert len(lines) == 1


@pytest.mark.skipif(not engine_installed("openvino"), reason="the AVX2-only setting is OpenVINO's (oneDNN's) switch")
def test_int8_is_right_under_the_avx2_only_setting(
    tmp_path: Path, data: Path, model: torch.nn.Module, vnni_folder: QuantizeResult
) -> None:
    """On any machine: a process with ONEDNN_MAX_CPU_ISA=AVX2 runs OpenVINO as a CPU without VNNI does. There,
    8-bit weights run as they are saturate (the failure this guards against); the same folder opened by
    load_quantized is narrowed and close to fp32; quantize's default makes 7-bit weights and checks them."""
    source = save_model_folder(tmp_path / "fp32", model)
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    child = Path(__file__).with_name("int8_avx2_child.py")
    argv = [sys.executable, str(child), str(source), str(data / "train"), str(vnni_folder.folder), str(tmp_path)]
    subprocess.run(argv, env=env, check=True, timeout=600)
    result = json.loads((tmp_path / "result.json").read_text())
    tolerance = LOGIT_TOLERANCE * result["spread"]
    assert "limited by ONEDNN_MAX_CPU_ISA=AVX2" in result["cpu"] or "VNNI" not in result["cpu"]
    assert result["raw_8bit"]["max_logit_diff"] > tolerance  # saturated: not the network quantized
    assert result["narrowed_8bit"]["max_logit_diff"] <= tolerance
    assert result["narrowed_8bit"]["top1_agreement"] >= 15 / 18
    assert len(result["notes"]) == 1 and "narrowed to 7 bits" in result["notes"][0]
    here = result["quantized_here"]
    assert (here["quantization"]["target_cpu"], here["quantization"]["weight_range"]) == ("any", 64)
    assert here["check"]["engine"] == "openvino" and here["check"]["top1_agreement"] >= 15 / 18
    assert here["check"]["max_logit_diff"] <= tolerance
