"""The benchmark runs end to end on tiny settings and reports what it promises (no timing assertions): ours on
its engine and every reference, timed in the same rounds, with a speed-up per reference."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.export.runtimes import engine_installed
from inceptionnet.inference.engines import choose_engine
from inceptionnet.models.summary import count_macs, count_params, summarize
from inceptionnet.perf import measure
from inceptionnet.perf.bench import run_benchmark
from inceptionnet.perf.config import BenchConfig
from inceptionnet.perf.loaderbench import LoaderBenchConfig, format_loader_result, run_loader_benchmark
from inceptionnet.perf.measure import CPU_CEILING_N, ceiling_size, matmul_ceiling_tflops, quantiles
from inceptionnet.perf.pipeline import make_jpegs
from inceptionnet.perf.references import REFERENCES, build_reference, reference_name

needs_engines = pytest.mark.skipif(
    not all(engine_installed(e) for e in ("onnxruntime", "openvino")), reason="needs onnxruntime and openvino"
)


def test_reference_names() -> None:
    assert reference_name("inception_v4") == "inception_v4"
    assert reference_name("inception_resnet_v2") == "inception_resnet_v2"
    assert reference_name("inception_v3") == "inception_v3"
    with pytest.raises(ValueError, match="timm has no equivalent of inception_resnet_v1"):
        reference_name("inception_resnet_v1")
    with pytest.raises(ValueError, match="timm has no equivalent"):
        reference_name("inception_resnet_v2_paper")
    with pytest.raises(ValueError, match="unknown reference 'torchvision'; choose from: timm, timm-channels-last"):
        reference_name("inception_v4", "torchvision")
    assert reference_name("inception_v4", "openvino") == "inception_v4"


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
        BenchConfig(model="inception_v4", width=0.25, references=("timm",)).resolved()
    with pytest.raises(ValueError, match="checkpointing"):
        BenchConfig(model="inception_v4", checkpointing=True).resolved()
    with pytest.raises(ValueError, match="--no-merged-heads is a training setting"):
        BenchConfig(model="inception_v4", merged_heads=False).resolved()
    with pytest.raises(ValueError, match=r"dtype must be one of \('fp32', 'bf16', 'fp16'\), got 'int8'"):
        BenchConfig(model="inception_v4", reference_dtype="int8").resolved()
    with pytest.raises(ValueError, match="--compile: only with --engine torch, not onnxruntime; drop it or use torch"):
        BenchConfig(model="inception_v4", engine="onnxruntime", compile=True).resolved()
    with pytest.raises(ValueError, match=r"reference.* run inference on the CPU; use --mode infer --device cpu"):
        BenchConfig(model="inception_v4", mode="train", references=("openvino",)).resolved()
    with pytest.raises(ValueError, match="ONNX Runtime runs timm's network in fp32 only; add --reference-dtype fp32"):
        BenchConfig(model="inception_v4", dtype="bf16", references=("onnxruntime",)).resolved()
    assert BenchConfig(model="inception_v4").resolved().fused is True
    assert BenchConfig(model="inception_v4", mode="train").resolved().fused is False
    bf16 = BenchConfig(model="inception_v4", engine="torch", dtype="bf16", allow_emulated_bf16=True)
    assert bf16.resolved().reference_dtype == "bf16"


def test_bf16_where_the_cpu_emulates_it_is_refused_unless_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # a CPU without AVX512-BF16, as inceptionnet.cpu sees it
    asked = BenchConfig(model="inception_v4", dtype="bf16")
    with pytest.raises(ValueError, match=r"bf16 needs AVX512-BF16 or AMX.*or add --allow-emulated-bf16"):
        asked.resolved()
    with pytest.raises(ValueError, match="--allow-emulated-bf16"):
        BenchConfig(model="inception_v4", references=("timm",), reference_dtype="bf16").resolved()
    assert replace(asked, allow_emulated_bf16=True).resolved().engine == "torch"  # the engine that emulates it
    with pytest.raises(ValueError, match="OpenVINO runs bf16 only on CPUs with AVX512-BF16 or AMX"):
        replace(asked, allow_emulated_bf16=True, engine="openvino").resolved()
    tiny = ["--model", "inception_v4", "--width", "0.25", "--input-size", "75", "--batch-size", "1", "--iters", "1"]
    assert main(["bench", *tiny, "--dtype", "bf16"]) == 2  # at once, before any measurement
    assert "--allow-emulated-bf16" in capsys.readouterr().err


def test_the_cpu_ceiling_takes_a_size_that_is_quick_to_time(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert ceiling_size(cpu, torch.float32) in (256, 512, 1024, CPU_CEILING_N)
    monkeypatch.setattr(measure, "CEILING_STEP_S", 0.0)  # as if every product were slow (emulated bf16)
    assert ceiling_size(cpu, torch.bfloat16) == 256
    assert matmul_ceiling_tflops(device=cpu, dtype=torch.float32, n=256, reps=1) > 0


def test_config_engine_is_what_predict_runs() -> None:
    assert BenchConfig(model="inception_v4").resolved().engine == choose_engine("auto", device="cpu")
    # the torch-only settings make auto mean torch
    assert BenchConfig(model="inception_v4", compile=True).resolved().engine == "torch"
    assert BenchConfig(model="inception_v4", mode="train").resolved().engine == "torch"
    assert BenchConfig(model="inception_v4", channels_last=False).resolved().engine == "torch"
    refs = ("none", "openvino", "timm", "openvino")
    assert BenchConfig(model="inception_v4", references=refs).resolved().references == ("openvino", "timm")


def test_quantiles_of_the_rounds() -> None:
    assert quantiles([5.0, 1.0, 3.0, 2.0, 4.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "max": 5.0}
    assert quantiles([2.0]) == {"median": 2.0, "q1": 2.0, "q3": 2.0, "min": 2.0, "max": 2.0}


def test_cli_bench_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--model", "inception_v4", "--width", "0.25", "--input-size", "75", "--batch-size", "2"]
    assert main([*args, "--engine", "torch", "--iters", "2", "--warmup", "1", "--json", str(out)]) == 0
    assert "img/s" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["config"]["fused"] is True and r["config"]["channels_last"] is True and r["config"]["engine"] == "torch"
    assert r["references"] == [] and r["speedups"] == []
    ours = r["ours"]
    assert ours["key"] == "ours" and ours["engine"] == "torch" and ours["dtype"] == "fp32"
    assert len(ours["step_s"]) == 2 and ours["images_per_s"] > 0
    assert ours["macs_per_image"] > 0 and ours["ceiling_share"] > 0 and ours["ceiling_tflops"] > 0
    assert {"peak_memory_mb", "memory_method", "achieved_tflops"} <= set(ours)
    assert r["torch_version"] == torch.__version__ and r["date"]
    # Counted on the meta device, the bench's multiply-adds are those `inceptionnet summary` reports.
    assert ours["macs_per_image"] == summarize(create_model("inception_v4", width=0.25), input_size=75).macs


def test_interleaved_against_timm() -> None:
    cfg = BenchConfig(model="inception_v3", batch_size=1, input_size=75, iters=2, warmup=0, references=("timm",))
    r = run_benchmark(replace(cfg, engine="torch"))
    (ref,) = r.references
    assert ref.key == "timm" and len(ref.step_s) == len(r.ours.step_s) == 2
    assert ref.macs_per_image == r.ours.macs_per_image
    s = r.speedup("timm")
    assert s.per_round == [a / b for a, b in zip(ref.step_s, r.ours.step_s, strict=True)]
    assert s.min <= s.median <= s.max and s.median == pytest.approx(sum(s.per_round) / 2)


@pytest.mark.slow  # about 25 s; .ci/run runs it
@needs_engines
def test_bench_against_every_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ours on the engine predict picks, against timm on PyTorch (both layouts), ONNX Runtime and OpenVINO.

    Both ours and timm's network are exported to ONNX here: ~20 s on 2 cores. The command runs in its
    own process, as a user runs it: a test process that has loaded timm's exporter, ONNX Runtime and
    OpenVINO together and then forks loader workers was seen to crash on a later signal."""
    out = tmp_path / "bench.json"
    args = ["bench", "--model", "inception_v3", "--input-size", "75", "--batch-size", "1", "--iters", "1"]
    argv = [sys.executable, "-m", "inceptionnet", *args, "--warmup", "0", "--reference", *REFERENCES]
    done = subprocess.run([*argv, "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    r = json.loads(out.read_text())
    assert r["config"]["engine"] == r["ours"]["engine"] == choose_engine("auto", device="cpu")
    assert [m["key"] for m in r["references"]] == list(REFERENCES)
    assert [m["engine"] for m in r["references"]] == ["torch", "torch", "onnxruntime", "openvino"]
    assert set(r["versions"]) >= {"timm", "onnxruntime", "openvino"}
    for m in (r["ours"], *r["references"]):
        assert len(m["step_s"]) == 1 and m["images_per_s"] > 0 and m["macs_per_image"] == r["ours"]["macs_per_image"]
    for s, ref in zip(r["speedups"], r["references"], strict=True):
        assert s["reference"] == ref["key"] and s["per_round"] == [ref["step_s"][0] / r["ours"]["step_s"][0]]
        assert f"speed-up over {ref['key']} " in text


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
    assert r.config["fused"] is False and r.config["checkpointing"] is True and r.config["merged_heads"] is True
    assert r.ours.achieved_tflops > 0 and not any("merged" in n for n in r.notes)
    plain = run_benchmark(replace(cfg, merged_heads=False))  # the blocks as written, said in the notes
    assert plain.config["merged_heads"] is False and any("--no-merged-heads" in n for n in plain.notes)


@pytest.mark.usefixtures("native_bf16")
def test_bf16_fused_inference_runs() -> None:
    cfg = BenchConfig(
        model="inception_resnet_v2", width=0.25, input_size=75, batch_size=1, iters=1, warmup=0, dtype="bf16"
    )
    r = run_benchmark(replace(cfg, engine="torch"))
    assert r.ours.images_per_s > 0 and r.ours.dtype == "bf16" and any("weights cast once" in n for n in r.notes)


def test_loader_benchmark_times_every_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_jpegs(tmp_path / "jpegs", 6, size=(96, 80))
    cfg = LoaderBenchConfig(
        data=str(tmp_path / "jpegs"), images=6, input_size=75, batch_size=2, workers=1, seconds=0.2, rounds=1
    )
    result = run_loader_benchmark(cfg, log=lambda _msg: None)
    assert [r.key for r in result.rates] == ["ours-folder", "ours-shards", "timm", "torchvision"] and result.files == 6
    assert all(len(r.rounds) == 1 and r.images_per_s > 0 for r in result.rates)
    assert json.loads(result.to_json())["rates"][0]["images_per_s"] == result.rates[0].images_per_s
    table = format_loader_result(result)
    assert "ours (folder)" in table and "1.00x" in table and "per core" in table
    assert (
        main(
            [
                "bench",
                "--mode",
                "loader",
                "--data",
                str(tmp_path / "jpegs"),
                "--images",
                "6",
                "--input-size",
                "75",
                "--batch-size",
                "2",
                "--workers",
                "1",
                "--seconds",
                "0.2",
                "--iters",
                "1",
            ]
        )
        == 0
    )
    assert "torchvision ImageFolder" in capsys.readouterr().out
