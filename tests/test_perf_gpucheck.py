"""The GPU check (benchmarks/gpucheck) runs end to end in its tiny CPU setting and writes what it promises;
its budget, section deadlines, batch search, pinned loader, refusal without timm and data-loading
verdicts behave. No timing assertions."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from gpucheck import CheckConfig, main, run_check
from gpucheck.report import JSON_NAME, LOG_NAME, MARKDOWN_NAME
from gpucheck.state import Check
from gpucheck.steps import largest_batch, out_of_memory
from torch import nn
from torch.utils.data._utils.pin_memory import pin_memory

from inceptionnet.data import Batch
from inceptionnet.evaluation import ViewBatch
from inceptionnet.models import Preprocessing
from inceptionnet.perf import pipeline
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.inputs import training_transform

pytestmark = pytest.mark.usefixtures("one_thread")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class _FailsToCompile(nn.Module):
    """What a compiler that cannot take a network gives: an error at the first call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("stand-in compiler failed\nits long traceback")


def _compile_stand_in(model: nn.Module) -> nn.Module:
    """torch.compile's stand-in: ours as it is, timm's network fails (so the partial path runs)."""
    return _FailsToCompile(model) if type(model).__module__.startswith("timm") else model


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], str, list[Any]]]:
    """The tiny check with every section running: torch.compile and TensorRT stood in for (their own
    compilers are too slow, or absent, here; the check's code around them runs). Also yields the
    arguments the input sections built their transform from."""
    out = tmp_path_factory.mktemp("gpucheck")
    transforms: list[Any] = []

    def spy(cfg: TrainConfig, pre: Preprocessing, *, input_size: int) -> Callable[..., Any]:
        transforms.append((cfg, input_size))
        return training_transform(cfg, pre, input_size=input_size)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "compile", _compile_stand_in)
        mp.setattr("gpucheck.run.tensorrt_version", lambda: ("stand-in", "installed"))
        mp.setattr("gpucheck.models.tensorrt_module", lambda model, x: model)
        mp.setattr("gpucheck.inputs.training_transform", spy)
        run_check(CheckConfig.tiny_run(str(out), compile=True), log=lambda _msg: None)
    yield json.loads((out / JSON_NAME).read_text()), (out / MARKDOWN_NAME).read_text(), transforms


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_every_section_runs_in_the_tiny_setting(tiny_run: tuple[dict[str, Any], str, list[Any]]) -> None:
    report, _, _ = tiny_run
    assert [(s["name"], s["status"]) for s in report["sections"]] == [
        ("matmul ceiling", "ok"),
        ("inception_v4 training eager", "ok"),
        ("inception_v4 inference fp32", "ok"),
        ("inception_v4 inference bf16", "ok"),
        ("JPEG training loader", "ok"),
        ("JPEG decode on the device", "ok"),
        ("inception_v4 training compiled, ours", "ok"),
        ("inception_v4 training compiled, timm", "failed"),  # the stand-in compiler fails timm's network
        ("inception_v4 inference TensorRT", "ok"),
    ]
    assert all(_positive(s["seconds"]) and _positive(s["deadline_s"]) for s in report["sections"])


def test_json_holds_the_machine_the_versions_and_the_settings(tiny_run: tuple[dict[str, Any], str, list[Any]]) -> None:
    report, _, _ = tiny_run
    assert report["device"]["type"] == "cpu" and report["device"]["name"]
    assert report["versions"]["torch"] == torch.__version__ and report["versions"]["timm"]
    assert set(report["machine"]) == {"nvidia_smi", "shm"}
    assert "gpus" in report["machine"]["nvidia_smi"] or "error" in report["machine"]["nvidia_smi"]
    assert report["date"].endswith("+00:00") and report["config"]["input_size"] == 75
    assert report["batch_sizes"] == {
        "inception_v4 training": 2,
        "inception_v4 inference fp32": 2,
        "inception_v4 inference bf16": 2,
    }
    assert _positive(report["ceiling_tflops"]["bf16"]) and _positive(report["ceiling_tflops"]["fp32"])
    macs = report["macs_per_image"]["inception_v4"]
    assert macs["ours"] == macs["timm"] > 0  # the same network: the same work per image
    assert 0 < report["elapsed_s"] < report["config"]["budget_s"]


def test_every_measurement_is_a_finite_positive_number(tiny_run: tuple[dict[str, Any], str, list[Any]]) -> None:
    report, _, _ = tiny_run
    for timing in report["networks"].values():
        for key in ("images_per_s", "achieved_tflops", "first_call_s"):
            assert all(_positive(v) for v in timing[key].values()), (key, timing)
    for key in ("loader", "decode"):
        assert _positive(report[key]["images_per_s"]) and report[key]["images"] > 0
    ours, timm = (
        report["networks"]["inception_v4 training compiled, ours"],
        report["networks"]["inception_v4 training compiled, timm"],
    )
    assert list(ours["first_call_s"]) == list(ours["images_per_s"]) == ["ours"] and not ours["errors"]
    assert timm["images_per_s"] == {} and timm["first_call_s"] == {}
    failed = next(s for s in report["sections"] if s["name"] == "inception_v4 training compiled, timm")
    assert failed["why"] == "RuntimeError: stand-in compiler failed"
    for row in report["rows"]:
        assert _positive(row["ours"]), row
        assert row["timm"] is None or (_positive(row["timm"]) and _positive(row["ratio"])), row


def test_markdown_table_has_one_row_per_measurement(tiny_run: tuple[dict[str, Any], str, list[Any]]) -> None:
    report, table, _ = tiny_run
    whats = [row["what"] for row in report["rows"]]
    expected = [
        "inception_v4 training, bf16 autocast, channels_last, eager, batch 2: images/s",
        "inception_v4 training, bf16 autocast, channels_last, eager, batch 2: MFU, % of the bf16 matmul ceiling",
        "inception_v4 inference, fp32, channels_last, eager, batch 2: images/s",
        "inception_v4 inference, bf16, channels_last, eager, batch 2: images/s",
        "JPEG training loader, 1 worker(s), batch 2, 75 px: images/s",
        "JPEG decode + training transform on cpu, batch 2: images/s",
        "inception_v4 training, bf16 autocast, channels_last, torch.compile, batch 2: images/s",
        "inception_v4 torch.compile and first step (s)",
        "inception_v4 inference, TensorRT fp16, batch 2: images/s",
        "inception_v4 TensorRT build (s)",
    ]
    assert set(expected) <= set(whats) and len(whats) == 14  # and an MFU row for each of the 5 network sections
    assert "| what | ours | timm | ours / timm |" in table
    for what in whats:
        assert sum(line.startswith(f"| {what} |") for line in table.splitlines()) == 1, what
    assert "data loading is not the bottleneck" in table or "data loading IS the bottleneck" in table
    assert "- inception_v4 training compiled, timm: failed, RuntimeError: stand-in compiler failed" in table
    compiled = [row for row in report["rows"] if "torch.compile" in row["what"]]
    assert compiled and all(row["timm"] is None and row["ratio"] is None for row in compiled)


def test_input_sections_time_the_transform_training_builds(tiny_run: tuple[dict[str, Any], str, list[Any]]) -> None:
    report, _, transforms = tiny_run
    assert transforms == [(TrainConfig(), 75), (TrainConfig(), 75)]  # the loader's, then the device decode's
    assert report["loader"]["pinned"] is torch.cuda.is_available()  # training's loader pins on a CUDA machine


def test_an_exhausted_budget_skips_every_section_and_still_writes_the_report(tmp_path: Path) -> None:
    result = run_check(CheckConfig.tiny_run(str(tmp_path), budget_s=0.0), log=lambda _msg: None)
    assert result.sections and all(s.status == "skipped" for s in result.sections)
    budget_skips = [s for s in result.sections if "budget" in (s.why or "")]
    assert [s.name for s in budget_skips][:2] == ["matmul ceiling", "inception_v4 training eager"]
    assert result.rows() == [] and result.verdicts == []
    written = json.loads((tmp_path / JSON_NAME).read_text())
    assert [s["name"] for s in written["sections"]] == [s.name for s in result.sections]
    assert "Not measured:" in (tmp_path / MARKDOWN_NAME).read_text()


def test_command_line_writes_results_and_log_into_the_folder_named(tmp_path: Path) -> None:
    out = tmp_path / "OUT" / "gpu-check"  # as on a lent device: a folder under $OUT, made by the check
    assert main(["--tiny", "--out", str(out), "--budget-s", "0"]) == 0
    assert {p.name for p in out.iterdir()} == {JSON_NAME, MARKDOWN_NAME, LOG_NAME}
    log = (out / LOG_NAME).read_text()
    assert "versions: inceptionnet" in log and "nvidia-smi:" in log and "/dev/shm:" in log


_DEADLINE = """
import signal, time
from gpucheck.state import BudgetExceeded, deadline
before = signal.getsignal(signal.SIGALRM)
try:
    with deadline(0.05):
        end = time.perf_counter() + 5
        while time.perf_counter() < end:
            time.sleep(0.01)
    raise SystemExit("the deadline did not stop the block")
except BudgetExceeded:
    pass
with deadline(5.0):
    pass  # finishes in time: nothing raised, the timer is cancelled
time.sleep(0.06)
assert signal.getsignal(signal.SIGALRM) is before
print("deadline ok")
"""

_SECTION_DEADLINE = """
import sys, time
from gpucheck import CheckConfig
from gpucheck.config import ESTIMATES_S
from gpucheck.state import Check
ESTIMATES_S["ceiling"] = 0.05  # a section expected to take 0.05 s is stopped after 3 x that
check = Check(CheckConfig.tiny_run(sys.argv[1]), log=lambda _msg: None)
check.section("hangs", "ceiling", lambda: time.sleep(30))
check.section("next", "ceiling", lambda: None)
hung, after = check.result.sections
assert hung.status == "stopped" and hung.seconds < 5 and abs(hung.deadline_s - 0.15) < 1e-9, hung
assert hung.why == "stopped 0.15 s after the section began: 3 x its estimate of 0.05 s", hung.why
assert after.status == "ok", after  # the budget left goes to the next section
print("section deadline ok")
"""


@pytest.mark.parametrize("script", [_DEADLINE, _SECTION_DEADLINE], ids=["deadline", "section"])
def test_deadline_stops_a_block_and_the_next_section_runs(script: str, tmp_path: Path) -> None:
    # In a fresh interpreter, as the check runs: a process that has loaded ONNX Runtime, OpenVINO and
    # timm's exporter together (as this test session has) was seen to crash on the timer signal.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0 and " ok" in done.stdout, done.stderr


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE"), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_out_of_memory_is_told_apart_from_other_errors(err: BaseException, expected: bool) -> None:
    assert out_of_memory(err) is expected


def test_largest_batch_halves_on_out_of_memory_from_any_library() -> None:
    tried: list[int] = []

    def fits(batch: int) -> None:
        tried.append(batch)
        if batch > 100:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        if batch > 48:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")

    assert largest_batch(fits, start=256, device=torch.device("cpu")) == (32, [256, 128, 64, 32])
    assert tried == [256, 128, 64, 32]

    def never(batch: int) -> None:
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(RuntimeError, match=r"not even a batch of 1 fits.*tried batches \[4, 2, 1\]"):
        largest_batch(never, start=4, device=torch.device("cpu"))

    def broken(batch: int) -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):  # not memory: no smaller batch tried
        largest_batch(broken, start=4, device=torch.device("cpu"))


def test_pinned_loader_path_pins_the_batch_types(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned: list[tuple[int, ...]] = []

    def pin(tensor: torch.Tensor, *args: object) -> torch.Tensor:  # page-locking needs CUDA; record the call
        pinned.append(tuple(tensor.shape))
        return tensor.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    batch = Batch(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]), 1)
    out = pin_memory(batch)  # what DataLoader(pin_memory=True)'s pinning thread does with each batch
    assert isinstance(out, Batch) and out.skipped == 1 and pinned == [(2, 3, 4, 4), (2,)]
    views = ViewBatch((torch.zeros(2, 12, 3, 4, 4),), torch.tensor([0, 1]), 0)
    out = pin_memory(views)
    assert isinstance(out, ViewBatch) and pinned[2:] == [(2, 12, 3, 4, 4), (2,)]


def test_a_missing_timm_stops_the_check_before_it_measures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else find_spec(name, *a))
    with pytest.raises(ValueError, match=r"timm is not installed.*--no-timm"):
        run_check(CheckConfig.tiny_run(str(tmp_path)), log=lambda _msg: None)
    assert not (tmp_path / JSON_NAME).exists()


def test_without_timm_only_our_networks_are_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_timm(name: str) -> nn.Module:
        raise AssertionError("timm's network built with timm=False")

    monkeypatch.setattr("gpucheck.state.build_reference", no_timm)
    check = Check(CheckConfig.tiny_run(str(tmp_path), timm=False), log=lambda _msg: None)
    assert list(check.pair("inception_v4")) == ["ours"] and list(check.result.macs_per_image["inception_v4"]) == [
        "ours"
    ]


def test_loader_verdicts_name_the_bottleneck_and_the_fix() -> None:
    loader = pipeline.LoaderSpeed(800.0, 50.0, 8000, 10.0, 1.0, 16, 32, 256, 0, True)
    slow, fast = pipeline.loader_verdicts(
        loader,
        {"inception_v4": 1200.0, "inception_resnet_v2": 600.0},
        device_decode=pipeline.DecodeSpeed(6000.0, 60000, 10.0, 0.0001, 128, "cuda", 256),
    )
    assert slow.bottleneck and slow.workers_needed == 24 and slow.device_decode_share == pytest.approx(0.2)
    assert "IS the bottleneck" in slow.text and "decode_jpeg(device='cuda')" in slow.text
    assert "about 20% of the GPU's time" in slow.text
    assert not fast.bottleneck and "is not the bottleneck" in fast.text and "Fix" not in fast.text


def test_device_decode_runs_the_training_transform(tmp_path: Path) -> None:
    paths = pipeline.make_jpegs(tmp_path, 3, size=(120, 90))
    assert all(p.stat().st_size > 1000 for p in paths)
    calls: list[torch.Tensor] = []
    transform = training_transform(TrainConfig(), Preprocessing(input_size=80), input_size=80)

    def spy(image: torch.Tensor) -> torch.Tensor:
        calls.append(image)
        x = transform(image)
        assert x.shape == (3, 80, 80) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
        return x

    speed = pipeline.measure_device_decode(
        paths, device=torch.device("cpu"), transform=spy, batch_size=2, seconds=0.01, max_batches=1
    )
    assert speed.images == 2 and _positive(speed.images_per_s) and len(calls) == 4  # a warm-up batch and one timed
    assert calls[0].dtype == torch.uint8 and calls[0].shape == (3, 90, 120)


def test_command_line_refuses_unknown_models_and_a_missing_gpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--tiny", "--out", str(tmp_path), "--models", "inception_v5"]) == 2
    assert "unknown model(s) ['inception_v5']" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["--out", str(tmp_path)]) == 2
        assert "--tiny" in capsys.readouterr().err
