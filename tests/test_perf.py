"""The benchmark runs end to end on tiny settings and reports what it promises (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.models.summary import count_macs, count_params, summarize
from inceptionnet.perf.bench import run_benchmark
from inceptionnet.perf.config import BenchConfig
from inceptionnet.perf.measure import quantiles
from inceptionnet.perf.references import build_reference, reference_name


def test_reference_names() -> None:
    assert reference_name("inception_v4") == "inception_v4"
    assert reference_name("inception_resnet_v2") == "inception_resnet_v2"
    assert reference_name("inception_v3") == "inception_v3"
    with pytest.raises(ValueError, match="timm has no equivalent of inception_resnet_v1"):
        reference_name("inception_resnet_v1")
    with pytest.raises(ValueError, match="timm has no equivalent"):
        reference_name("inception_resnet_v2_paper")
    with pytest.raises(ValueError, match="the only reference is 'timm'"):
        reference_name("inception_v4", "torchvision")


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_reference_is_the_same_network(name: str) -> None:
    # Same parameter count and the same multiply-adds: the comparison is between equal amounts of work.
    # Built on the meta device: shapes only, no weights initialised, so full width at 299 costs nothing.
    with torch.device("meta"):
        ours, ref = create_model(name), build_reference(name)
    assert count_params(ours) == count_params(ref)
    assert count_macs(ours, input_size=299) == count_macs(ref, input_size=299)


def test_config_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="inference-only"):
        BenchConfig(model="inception_v4", mode="train", fused=True).resolved()
    with pytest.raises(ValueError, match="drop --width"):
        BenchConfig(model="inception_v4", width=0.25, reference="timm").resolved()
    with pytest.raises(ValueError, match="checkpointing"):
        BenchConfig(model="inception_v4", checkpointing=True).resolved()
    with pytest.raises(ValueError, match=r"dtype must be one of \('fp32', 'bf16', 'fp16'\), got 'int8'"):
        BenchConfig(model="inception_v4", reference_dtype="int8").resolved()
    assert BenchConfig(model="inception_v4").resolved().fused is True
    assert BenchConfig(model="inception_v4", mode="train").resolved().fused is False
    assert BenchConfig(model="inception_v4", dtype="bf16").resolved().reference_dtype == "bf16"


def test_quantiles_of_the_rounds() -> None:
    assert quantiles([5.0, 1.0, 3.0, 2.0, 4.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "max": 5.0}
    assert quantiles([2.0]) == {"median": 2.0, "q1": 2.0, "q3": 2.0, "min": 2.0, "max": 2.0}


def test_cli_bench_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--model", "inception_v4", "--width", "0.25", "--input-size", "75", "--batch-size", "2"]
    assert main([*args, "--iters", "2", "--warmup", "1", "--json", str(out)]) == 0
    assert "img/s" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["config"]["fused"] is True and r["config"]["channels_last"] is True
    assert r["reference"] is None and r["speedup"] is None
    ours = r["ours"]
    assert len(ours["step_s"]) == 2 and ours["images_per_s"] > 0
    assert ours["macs_per_image"] > 0 and ours["ceiling_share"] > 0 and r["ceiling_tflops"] > 0
    assert {"peak_memory_mb", "memory_method", "achieved_tflops"} <= set(ours)
    assert r["torch_version"] == torch.__version__ and r["date"]
    # Counted on the meta device, the bench's multiply-adds are those `inceptionnet summary` reports.
    assert ours["macs_per_image"] == summarize(create_model("inception_v4", width=0.25), input_size=75).macs


def test_interleaved_against_timm() -> None:
    cfg = BenchConfig(model="inception_v3", batch_size=1, input_size=75, iters=2, warmup=0, reference="timm")
    r = run_benchmark(cfg)
    assert r.reference is not None and len(r.reference.step_s) == len(r.ours.step_s) == 2
    assert r.reference.macs_per_image == r.ours.macs_per_image
    assert r.speedup is not None and r.speedup["min"] <= r.speedup["median"] <= r.speedup["max"]
    assert r.speedup["median"] == pytest.approx(
        sorted(a / b for a, b in zip(r.reference.step_s, r.ours.step_s, strict=True))[0] / 2
        + sorted(a / b for a, b in zip(r.reference.step_s, r.ours.step_s, strict=True))[1] / 2
    )


@pytest.mark.slow  # a first training step pays oneDNN's one-off kernel set-up: ~25 s on 2 cores
def test_training_with_checkpointing_runs() -> None:
    cfg = BenchConfig(
        model="inception_v4",
        mode="train",
        width=0.25,
        batch_size=2,
        input_size=75,
        iters=1,
        warmup=0,
        checkpointing=True,
    )
    r = run_benchmark(cfg)
    assert r.config["fused"] is False and r.config["checkpointing"] is True
    assert r.ours.achieved_tflops > 0


def test_bf16_fused_inference_runs() -> None:
    cfg = BenchConfig(
        model="inception_resnet_v2", width=0.25, input_size=75, batch_size=1, iters=1, warmup=0, dtype="bf16"
    )
    r = run_benchmark(cfg)
    assert r.ours.images_per_s > 0 and any("bf16 weights" in n for n in r.notes)
