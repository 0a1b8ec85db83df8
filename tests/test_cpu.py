"""What the CPU computes natively (inceptionnet.cpu): the flags, the ISA cap that simulates another CPU, and
what each precision makes of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from inceptionnet.cli import main
from inceptionnet.cpu import ISA_CAPS, CpuFeatures, cpu_features
from inceptionnet.data import DEMO_DATA
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.learner import build_learner

ZEN4 = CpuFeatures("Zen 4", True, frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))


def test_the_features_decide_each_precision() -> None:
    assert ZEN4.vnni and ZEN4.bf16 and not ZEN4.int8_saturates and ZEN4.int8_weight_range == 127
    haswell = CpuFeatures("Haswell", True, frozenset({"avx2"}))
    assert not haswell.vnni and not haswell.bf16 and haswell.int8_saturates and haswell.int8_weight_range == 64
    skylake = CpuFeatures("Skylake-SP", True, frozenset({"avx2", "avx512f"}))  # AVX-512 without VNNI saturates too
    assert skylake.int8_saturates and not skylake.bf16
    alder_lake = CpuFeatures("Alder Lake", True, frozenset({"avx2", "avx_vnni"}))  # AVX-VNNI sums in 32 bits
    assert alder_lake.vnni and not alder_lake.int8_saturates and not alder_lake.bf16
    arm = CpuFeatures("Neoverse", False, frozenset())  # widening int8 products: never saturates
    assert not arm.int8_saturates and arm.int8_weight_range == 127 and not arm.bf16
    assert ZEN4.describe() == "Zen 4 (AVX2, AVX-512, VNNI, AVX512-BF16)"
    assert haswell.describe() == "Haswell (AVX2)"


@pytest.mark.parametrize(
    ("cap", "vnni", "bf16"),
    [("AVX2", False, False), ("avx512_core", False, False), ("AVX512_CORE_VNNI", True, False), ("ALL", None, None)],
)
def test_onednn_max_cpu_isa_caps_the_features(
    monkeypatch: pytest.MonkeyPatch, cap: str, vnni: bool, bf16: bool
) -> None:
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    found = cpu_features()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    capped = cpu_features()
    assert capped.flags <= found.flags and capped.name == found.name
    if cap == "ALL":
        assert capped == found  # no cap
        return
    assert capped.flags <= ISA_CAPS[cap.upper()]
    assert capped.vnni == (vnni and found.vnni) and capped.bf16 == (bf16 and found.bf16)
    assert (capped.cap is not None) == (capped.flags != found.flags)
    if capped.cap:
        assert capped.describe().endswith(f"; limited by ONEDNN_MAX_CPU_ISA={cap.upper()})")


def test_the_older_variable_name_caps_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    found = cpu_features()
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert cpu_features().flags == found.flags & {"avx2"}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")  # oneDNN reads the new name first
    assert cpu_features() == found


@pytest.mark.parametrize("command", ["predict", "eval", "serve"])
def test_bf16_on_a_cpu_that_emulates_it_is_refused_at_once(
    command: str, monkeypatch: pytest.MonkeyPatch, tiny_classifier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # a CPU without AVX512-BF16 or AMX, as inceptionnet.cpu sees it
    images = str(DEMO_DATA / "val")
    argv = {
        "predict": ["predict", images, "--model", str(tiny_classifier)],
        "eval": ["eval", "--data", images, "--model", str(tiny_classifier)],
        "serve": ["serve", str(tiny_classifier), "--port", "0"],  # refused before it binds a port
    }[command]
    for engine in ("auto", "torch"):
        assert main([*argv, "--dtype", "bf16", "--engine", engine]) == 2
        err = capsys.readouterr().err
        assert f"bf16 needs AVX512-BF16 or AMX, and this CPU, {cpu_features().describe()}, has neither" in err
        assert "use --dtype fp32" in err


def test_training_in_bf16_says_when_the_cpu_emulates_it(
    monkeypatch: pytest.MonkeyPatch, make_train_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    ctx = Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    cfg = make_train_config(tmp_path, tmp_path / "run", precision="bf16")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    host = cpu_features()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    notes = build_learner(cfg, ctx, num_classes=2).notes
    assert f"bf16 on {cpu_features().describe()}: emulated, many times slower than --precision fp32" in notes
    if host.bf16:  # said only where it is so
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
        assert not any("emulated" in n for n in build_learner(cfg, ctx, num_classes=2).notes)
