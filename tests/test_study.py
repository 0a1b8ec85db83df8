"""The reproduction study: the probe of zero activations, the run fates and gaps, and both studies end to end."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.study import design as study_module
from inceptionnet.study.design import Arm, Study, build_study, run_dir
from inceptionnet.study.report import residual_summary, run_fate, stats
from inceptionnet.study.run import run_study
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.loop import train
from inceptionnet.training.probe import LastFeatureProbe
from inceptionnet.weights.runfolder import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def test_probe_measures_the_map_the_classifier_pools() -> None:
    model = create_model("inception_resnet_v1", num_classes=3, width=0.125).eval()
    probe = LastFeatureProbe(model)
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        model(x)
        assert probe.take(torch.device("cpu")).tolist() == [0.0, 0.0]  # not armed: nothing measured
        probe.armed = True
        model(x)
        features = model.forward_features(x)
    zero_fraction, dead = probe.take(torch.device("cpu")).tolist()
    assert zero_fraction == pytest.approx((features == 0).float().mean().item())
    assert dead == pytest.approx((features == 0).all(dim=(0, 2, 3)).float().mean().item())
    assert not probe.armed  # one measurement per arming

    channels = model.num_features
    fake = torch.ones(2, channels, 2, 2)  # a quarter of the channels zero everywhere, a quarter in one image
    fake[:, : channels // 4] = 0
    fake[0, channels // 4 : channels // 2] = 0
    probe.armed = True
    with torch.no_grad():
        model.forward_head(fake)
    zero_fraction, dead = probe.take(torch.device("cpu")).tolist()
    assert zero_fraction == pytest.approx(0.375) and dead == pytest.approx(0.25)
    probe.remove()


def test_training_logs_step_records_and_applies_the_residual_scale(
    tmp_path: Path, make_image_folder: Callable[..., Path], make_train_config: Callable[..., TrainConfig]
) -> None:
    data = make_image_folder(tmp_path / "data", train=4, val=2)
    cfg = make_train_config(
        data,
        tmp_path / "run",
        model="inception_resnet_v1",
        epochs=1,
        batch_size=2,
        ema_decay=0,
        log_every=2,
        residual_scale=0.5,
    )
    result = train(cfg)
    assert {m.up.scale for m in result.model.modules() if hasattr(m, "up")} == {0.5}
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 3]  # steps 0 and 2 (counted from 0) of the 4
    for r in steps:
        assert 0 <= r["zero_fraction"] <= 1 and 0 <= r["dead_channels"] <= 1 and math.isfinite(r["loss"])
    epoch = next(r for r in records if r["kind"] == "epoch")
    assert 0 < epoch["train_time_s"] <= epoch["epoch_time_s"]
    with pytest.raises(ValueError, match="Inception-ResNet networks only"):
        train(replace(cfg, model="inception_v4", out_dir=str(tmp_path / "v4")))


def _steps(zeros: list[float], losses: list[float]) -> list[dict]:
    return [{"step": i + 1, "zero_fraction": z, "loss": v} for i, (z, v) in enumerate(zip(zeros, losses, strict=True))]


def test_run_fate_tells_dead_stalled_diverged_and_healthy_runs() -> None:
    healthy = run_fate(_steps([0.5] * 20, [2.3 - 0.05 * i for i in range(20)]), "finished", num_classes=10)
    assert not (healthy["died"] or healthy["stalled"] or healthy["diverged"])
    dead = run_fate(_steps([0.5] * 10 + [1.0] * 10, [9.0] * 10 + [2.3] * 10), "finished", num_classes=10)
    assert dead["died"] and dead["stalled"] and dead["first_dead_step"] == 11  # ln 10 = 2.303: chance level
    assert dead["final_zero_fraction"] == 1.0 and dead["max_zero_fraction"] == 1.0
    assert not run_fate(_steps([0.5] * 10, [9.0] * 5 + [2.1] * 5), "finished", num_classes=10)["stalled"]
    diverged = run_fate(_steps([0.5] * 4, [2.3, 5.0, 50.0, 500.0]), "diverged", num_classes=10)
    assert diverged["diverged"] and diverged["stalled"] and not diverged["died"]


def test_stats_and_residual_gaps_are_paired_by_seed() -> None:
    assert stats([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "min": 1.0, "max": 3.0, "n": 2}
    assert stats([])["n"] == 0 and math.isnan(stats([])["mean"])
    arms = (Arm("plain", "inception_v3", "g", False), Arm("res", "inception_resnet_v1", "g", True))
    study = Study("residual", TrainConfig(), arms, (0, 1))
    rows = []
    curves = {
        ("plain", 0): [80, 60, 50],
        ("plain", 1): [82, 62, 52],
        ("res", 0): [70, 50, 45],
        ("res", 1): [76, 55, 47],
    }
    for (arm, seed), errors in curves.items():
        for epoch, err in enumerate(errors, start=1):
            rows.append(
                {"arm": arm, "seed": seed, "epoch": epoch, "val_top1_error": err, "val_top5_error": err / 4}
                | {"train_time_s": 10.0 * epoch}
            )
    summary = residual_summary(study, rows)
    (c,) = summary["comparisons"]
    assert c["final_top1_gap"]["mean"] == pytest.approx(5.0)  # (50-45 + 52-47) / 2
    assert c["mean_top1_gap"]["mean"] == pytest.approx(((190 - 165) / 3 + (196 - 178) / 3) / 2)
    assert c["seeds_residual_ahead"] == 2
    assert c["epochs_to_plain_final"] == 3  # the plain network ends at 51 %; the residual mean is 46 % at epoch 3
    assert summary["arms"]["res"]["mean_top1_curve"] == [73, 52.5, 46]


def test_recipes_share_everything_but_the_arm(tmp_path: Path) -> None:
    study = build_study("scaling", seeds=2, data=tmp_path, lr=0.3)
    configs = [study.run_config(arm, seed, tmp_path) for seed in study.seeds for arm in study.arms]
    assert {c.width for c in configs} == {0.5} and {c.model for c in configs} == {"inception_resnet_v2_paper"}
    assert {c.lr for c in configs} == {0.3, study_module.PAPER_LR}  # the control arm keeps the paper's lr
    assert {c.seed for c in configs} == {0, 1} and len({c.out_dir for c in configs}) == len(configs)
    residual = build_study("residual", quick=True, seeds=5)
    assert residual.seeds == (0, 1) and residual.recipe.aux_weight == 0 and residual.recipe.ema_decay == 0
    with pytest.raises(ValueError, match="unknown study"):
        build_study("depth")
    with pytest.raises(ValueError, match="unknown training config fields"):
        build_study("residual", colour=1)


@pytest.mark.slow  # about 30 s; .ci/run runs it
def test_quick_residual_study_end_to_end_and_rerun_skips_finished_runs(tmp_path: Path, capsys) -> None:
    # `inceptionnet study residual --quick` as a user runs it: default data (CIFAR-10 here, else the demo set)
    out = tmp_path / "residual"
    assert main(["study", "residual", "--quick", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Inception-ResNet-v1 vs Inception-v3: mean top-1 gap" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and len(summary["runs"]) == 10
    assert {c["residual"] for c in summary["comparisons"]} == {
        "Inception-ResNet-v1",
        "Inception-ResNet-v2",
        "Inception-ResNet-v2 (paper)",
    }
    with open(out / "epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 * 2 and {"train_time_s", "val_top1_error", "val_top5_error"} <= rows[0].keys()
    assert (out / "residual.png").stat().st_size > 10_000 and (out / "summary.csv").exists()

    assert main(["study", "residual", "--quick", "--out-dir", str(out)]) == 0
    assert capsys.readouterr().out.count("done earlier") == 10


def test_scaling_study_resumes_an_interrupted_run_and_records_divergence(
    tmp_path: Path, make_image_folder: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_image_folder(tmp_path / "data", classes=3, train=8, val=4)
    study = build_study("scaling", quick=True, seeds=1, data=data, batch_size=4)  # 6 steps per epoch
    # The "scale 0.1" arm at a learning rate of 1e30: its first update throws the weights to ~1e30, so the
    # next step's BatchNorm variance overflows and the loss is NaN (the run diverges at its second step).
    arms = tuple(replace(a, overrides=a.overrides | {"lr": 1e30}) if a.label == "scale 0.1" else a for a in study.arms)
    study = replace(study, arms=arms)
    out = tmp_path / "scaling"
    first = study.arms[0]
    train(replace(study.run_config(first, 0, out), max_steps=3))  # an interrupted run: last.pt, no status

    summary = run_study(study, out)
    assert summary["complete"]
    records = read_metrics(run_dir(out, first, 0) / "metrics.jsonl")
    assert [r["resumed_from"] != "" for r in records if r["kind"] == "run"] == [False, True]
    assert {label: a["diverged"] for label, a in summary["arms"].items() if a["diverged"]} == {"scale 0.1": 1}
    steps = [r for r in records if r["kind"] == "step"]
    assert sorted({r["step"] for r in steps}) == list(range(1, 13))  # every step logged (log_every 1)
    assert records[-1]["kind"] == "epoch" and records[-1]["step"] == 12
    assert (out / "scaling.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "scale 0.1, seed 0: training" in printed and "  diverged: " in printed  # reported, not fatal
    diverged = next(a for a in study.arms if a.label == "scale 0.1")
    assert json.loads((run_dir(out, diverged, 0) / "status.json").read_text())["status"] == "diverged"
