"""The GPU check (perf/gpucheck) runs end to end in its tiny CPU setting and writes what it promises;
its budget, batch search and data-loading verdicts behave. No timing assertions."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from inceptionnet.data import read_image
from inceptionnet.models import Preprocessing
from inceptionnet.perf import pipeline
from inceptionnet.perf.gpucheck import CheckConfig, main, run_check
from inceptionnet.perf.gpucheck.report import JSON_NAME, MARKDOWN_NAME
from inceptionnet.perf.gpucheck.steps import first_calls, largest_batch

pytestmark = pytest.mark.usefixtures("one_thread")


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
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], str]]:
    """The tiny check with every section running: torch.compile and TensorRT stood in for (their own
    compilers are too slow, or absent, here; the check's code around them runs)."""
    out = tmp_path_factory.mktemp("gpucheck")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "compile", _compile_stand_in)
        mp.setattr("inceptionnet.perf.gpucheck.run.tensorrt_version", lambda: ("stand-in", "installed"))
        mp.setattr("inceptionnet.perf.gpucheck.models.tensorrt_module", lambda model, x: model)
        run_check(CheckConfig.tiny_run(str(out), compile=True), log=lambda _msg: None)
    yield json.loads((out / JSON_NAME).read_text()), (out / MARKDOWN_NAME).read_text()


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_every_section_runs_in_the_tiny_setting(tiny_run: tuple[dict[str, Any], str]) -> None:
    report, _ = tiny_run
    assert [(s["name"], s["status"]) for s in report["sections"]] == [
        ("matmul ceiling", "ok"),
        ("inception_v4 training eager", "ok"),
        ("inception_v4 inference fp32", "ok"),
        ("inception_v4 inference bf16", "ok"),
        ("JPEG training loader", "ok"),
        ("JPEG decode on the device", "ok"),
        ("inception_v4 training compiled", "ok"),
        ("inception_v4 inference TensorRT", "ok"),
    ]
    assert all(_positive(s["seconds"]) for s in report["sections"])


def test_json_holds_the_machine_the_versions_and_the_settings(tiny_run: tuple[dict[str, Any], str]) -> None:
    report, _ = tiny_run
    assert report["device"]["type"] == "cpu" and report["device"]["name"]
    assert report["versions"]["torch"] == torch.__version__ and report["versions"]["timm"]
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


def test_every_measurement_is_a_finite_positive_number(tiny_run: tuple[dict[str, Any], str]) -> None:
    report, _ = tiny_run
    for detail in report["details"].values():
        for key in ("images_per_s", "achieved_tflops", "compile_s", "build_s"):
            assert all(_positive(v) for v in detail.get(key, {}).values()), (key, detail)
        for key in ("loader", "decode"):
            if key in detail:
                assert _positive(detail[key]["images_per_s"]) and detail[key]["images"] > 0
    compiled = report["details"]["inception_v4 training compiled"]  # timm's network failed to compile
    assert list(compiled["compile_s"]) == list(compiled["images_per_s"]) == ["ours"]
    assert compiled["errors"] == {"timm": "RuntimeError: stand-in compiler failed"}
    for row in report["rows"]:
        assert _positive(row["ours"]), row
        assert row["timm"] is None or (_positive(row["timm"]) and _positive(row["ratio"])), row


def test_markdown_table_has_one_row_per_measurement(tiny_run: tuple[dict[str, Any], str]) -> None:
    report, table = tiny_run
    whats = [row["what"] for row in report["rows"]]
    expected = [
        "inception_v4 training, bf16 autocast, channels_last, eager, batch 2: images/s",
        "inception_v4 training, bf16 autocast, channels_last, eager, batch 2: MFU, % of the bf16 matmul ceiling",
        "inception_v4 inference, fp32, channels_last, eager, batch 2: images/s",
        "inception_v4 inference, bf16, channels_last, eager, batch 2: images/s",
        "JPEG training loader, 1 worker(s), batch 2, 75 px: images/s",
        "JPEG decode + augmentation on cpu, batch 2: images/s",
        "inception_v4 training, bf16 autocast, channels_last, torch.compile, batch 2: images/s",
        "inception_v4 torch.compile: first step with compilation (s)",
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


def test_an_exhausted_budget_skips_every_section_and_still_writes_the_report(tmp_path: Path) -> None:
    report = run_check(CheckConfig.tiny_run(str(tmp_path), budget_s=0.0), log=lambda _msg: None)
    assert report["sections"] and all(s["status"] == "skipped" for s in report["sections"])
    budget_skips = [s for s in report["sections"] if "budget" in s["why"]]
    assert [s["name"] for s in budget_skips][:2] == ["matmul ceiling", "inception_v4 training eager"]
    assert report["rows"] == [] and report["verdicts"] == []
    assert json.loads((tmp_path / JSON_NAME).read_text())["sections"] == report["sections"]
    assert "Not measured:" in (tmp_path / MARKDOWN_NAME).read_text()


_DEADLINE = """
import signal, time
from inceptionnet.perf.gpucheck.state import BudgetExceeded, deadline
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


def test_deadline_stops_a_block_and_restores_the_previous_handler() -> None:
    # In a fresh interpreter, as the check runs: a process that has loaded ONNX Runtime, OpenVINO and
    # timm's exporter together (as this test session has) was seen to crash on the timer signal.
    done = subprocess.run([sys.executable, "-c", _DEADLINE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "deadline ok" in done.stdout, done.stderr


def test_largest_batch_halves_on_out_of_memory() -> None:
    tried: list[int] = []

    def fits(batch: int) -> None:
        tried.append(batch)
        if batch > 48:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    assert largest_batch(fits, start=256, device=torch.device("cpu")) == (32, [256, 128, 64, 32])
    assert tried == [256, 128, 64, 32]

    def never(batch: int) -> None:
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(RuntimeError, match=r"not even a batch of 1 fits.*tried batches \[4, 2, 1\]"):
        largest_batch(never, start=4, device=torch.device("cpu"))


def test_a_failed_first_call_is_recorded_and_dropped() -> None:
    def broken() -> None:
        raise RuntimeError("backend compiler failed\nlong traceback")

    steps, seconds, errors = {"ours": lambda: None, "timm": broken}, {}, {}
    first_calls(steps, device=torch.device("cpu"), seconds=seconds, errors=errors)
    assert list(steps) == ["ours"] and list(seconds) == ["ours"]
    assert errors == {"timm": "RuntimeError: backend compiler failed"}


def test_loader_verdicts_name_the_bottleneck_and_the_fix() -> None:
    loader = {"images_per_s": 800.0, "per_worker_images_per_s": 50.0, "workers": 16}
    slow, fast = pipeline.loader_verdicts(
        loader, {"inception_v4": 1200.0, "inception_resnet_v2": 600.0}, device_decode={"images_per_s": 6000.0}
    )
    assert slow["bottleneck"] and slow["workers_needed"] == 24 and slow["device_decode_share"] == pytest.approx(0.2)
    assert "IS the bottleneck" in slow["text"] and "decode_jpeg(device='cuda')" in slow["text"]
    assert "about 20% of the GPU's time" in slow["text"]
    assert not fast["bottleneck"] and "is not the bottleneck" in fast["text"] and "Fix" not in fast["text"]


def test_device_augmentation_gives_normalised_channels_last_batches(tmp_path: Path) -> None:
    paths = pipeline.make_jpegs(tmp_path, 3, size=(120, 90))
    assert all(p.stat().st_size > 1000 for p in paths)
    images = [torch.from_numpy(np.array(read_image(p))).permute(2, 0, 1) for p in paths]
    x = pipeline.augment_batch(images, pre=Preprocessing(input_size=80), min_area=0.05, color_distort="full")
    assert x.shape == (3, 3, 80, 80) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.05  # (x - 0.5) / 0.5 of pixels in [0, 1]


def test_command_line_refuses_unknown_models_and_a_missing_gpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--tiny", "--out", str(tmp_path), "--models", "inception_v5"]) == 2
    assert "unknown model(s) ['inception_v5']" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["--out", str(tmp_path)]) == 2
        assert "--tiny" in capsys.readouterr().err
