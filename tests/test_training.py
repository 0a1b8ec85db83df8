"""The training loop end to end on a tiny network: resume equals an uninterrupted run, signals, NaN, outputs,
activation checkpointing, the command line."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import fields, replace

import pytest
import torch

from inceptionnet import create_model
from inceptionnet.cli import build_parser, main
from inceptionnet.data import derive_seed
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.faults import StopReason, TrainingDiverged
from inceptionnet.training.loop import train
from inceptionnet.training.presets import PRESETS, resolve_config
from inceptionnet.training.state import RunPosition
from inceptionnet.weights.runfolder import read_checkpoint, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, make_image_folder, make_train_config, one_thread):
    """Two epochs of 3 steps (8 readable images + 1 corrupt, batch 3), uninterrupted."""
    tmp = tmp_path_factory.mktemp("train")
    data = make_image_folder(tmp / "data", train=4, val=2, corrupt=1)
    result = train(make_train_config(data, tmp / "straight"))
    return data, result


def _states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_each_stop_reason_carries_its_exit_status() -> None:
    """As a process killed by the signal would report it; max_steps is a normal end."""
    statuses = {reason: reason.exit_status for reason in StopReason}
    assert statuses == {
        StopReason.SIGTERM: 128 + signal.SIGTERM,
        StopReason.SIGINT: 128 + signal.SIGINT,
        StopReason.SIGNAL: 128 + signal.SIGTERM,  # another process's signal stopped the run
        StopReason.MAX_STEPS: 0,
    }
    assert [reason.by_signal for reason in StopReason] == [True, True, True, False]
    assert StopReason("SIGTERM") == "SIGTERM"  # written and read as the signal's name


def test_resume_after_sigterm_equals_uninterrupted_training(
    straight_run, make_train_config, tmp_path, after_step, capsys
) -> None:
    data, straight = straight_run
    assert (straight.epoch, straight.step, straight.stopped_by) == (2, 6, None)

    # SIGTERM arrives after step 1 (of 3 in the first epoch) is logged: the next step finishes with the
    # stop agreed by all ranks, and a checkpoint is written.
    cfg = make_train_config(data, tmp_path / "run")
    handler = signal.getsignal(signal.SIGTERM)
    with after_step(1):
        first = train(cfg)
    assert (first.stopped_by, first.step, first.epoch) == (StopReason.SIGTERM, 2, 0)
    assert first.exit_status == 128 + signal.SIGTERM and straight.exit_status == 0
    assert signal.getsignal(signal.SIGTERM) is handler  # the previous handler is back
    assert read_checkpoint(tmp_path / "run")["position"]["batches"] == 2

    resumed = train(cfg, resume=tmp_path / "run")
    assert (resumed.stopped_by, resumed.step, resumed.epoch) == (None, 6, 2)
    _states_equal(resumed.model.state_dict(), straight.model.state_dict())
    _states_equal(resumed.averaged.state_dict(), straight.averaged.state_dict())
    assert resumed.val_top1_error == straight.val_top1_error
    out = capsys.readouterr().out
    assert "stopped by SIGTERM at step 2" in out and "resumed from" in out


def test_outputs_metrics_plot_checkpoints(straight_run) -> None:
    _, result = straight_run
    out = result.out_dir
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "metrics.jsonl", "curves.png"}
    records = read_metrics(out / "metrics.jsonl")
    assert records[0]["kind"] == "run" and records[0]["config"]["model"] == "inception_v3"
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(r["skipped_images"] == 1 for r in epochs)  # the corrupt file, once per epoch, not fatal
    assert epochs[-1]["val_top1_error"] == result.val_top1_error
    assert 0 <= result.val_top5_error <= result.val_top1_error <= 100
    state = read_checkpoint(out / "last.pt")
    assert state["version"] and state["config"]["width"] == 0.125 and state["position"]["step"] == 6
    assert state["classes"] == ["airplane", "automobile"]
    # The position is a plain dict (loadable with weights_only=True) of the run position's fields.
    assert set(state["position"]) == {f.name for f in fields(RunPosition)}
    assert RunPosition.from_dict(state["position"]) == RunPosition(
        epoch=2, step=6, best_top1_error=result.best_top1_error
    )
    # The network's name and every option it was built with, the auxiliary head included.
    assert state["model_name"] == "inception_v3"
    assert state["model_options"] == result.model.build_options
    assert state["model_options"]["aux_logits"] is True and state["model_options"]["num_classes"] == 2
    # As weights, the checkpoint gives the evaluated network (the weight average, without the aux head).
    model = create_model(weights=out / "last.pt")
    assert model.aux is None and model.class_names == ("airplane", "automobile")
    torch.testing.assert_close(model.head.fc.weight, result.averaged.module.head.fc.weight)


def test_divergence_stops_and_keeps_the_last_checkpoint(straight_run, make_train_config, tmp_path) -> None:
    data, straight = straight_run
    run = tmp_path / "run"
    shutil.copytree(straight.out_dir, run)
    before = (run / "last.pt").read_bytes()
    cfg = make_train_config(data, run, epochs=3, lr=1e38, clip_grad_norm=0.0)
    with pytest.raises(TrainingDiverged, match=r"at step \d+ \(epoch 3.*--lr.*--resume"):
        train(cfg, resume=run)
    assert (run / "last.pt").read_bytes() == before


def test_grad_checkpointing_gives_the_same_training(straight_run, make_train_config, tmp_path) -> None:
    data, straight = straight_run
    result = train(make_train_config(data, tmp_path / "run", grad_checkpointing=True))
    assert result.model.grad_checkpointing and not straight.model.grad_checkpointing
    _states_equal(result.model.state_dict(), straight.model.state_dict())
    _states_equal(result.averaged.state_dict(), straight.averaged.state_dict())
    assert result.val_top1_error == straight.val_top1_error


@pytest.mark.parametrize(
    ("seed", "rank", "step", "expected"),
    [(0, 0, 0, 8407437806151696170), (0, 1, 5, 2156912419844523939), (12345, 3, 987654, 7155897222246643172)],
)
def test_dropout_seed_of_a_step_is_fixed(seed: int, rank: int, step: int, expected: int) -> None:
    # The dropout masks of step `step` on rank `rank` are drawn after torch.manual_seed(derive_seed(seed,
    # rank, step, 1)); these values pin them, so runs of earlier versions resume identically.
    assert derive_seed(seed, rank, step, 1) == expected


def test_cli_train_runs_and_stops_at_max_steps(tmp_path, make_image_folder, capsys) -> None:
    data = make_image_folder(tmp_path / "data", train=3, val=1)
    args = ["train", "--data", str(data), "--out-dir", str(tmp_path / "run"), "--model", "inception_v3"]
    args += ["--width", "0.125", "--input-size", "75", "--batch-size", "3", "--num-workers", "0", "--no-progress"]
    assert main([*args, "--epochs", "2", "--max-steps", "1"]) == 0
    assert read_checkpoint(tmp_path / "run")["position"]["step"] == 1
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "epoch   2/2" in out.out and "val top-1 accuracy" in out.out
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["kind"] for r in records] == ["run", "run", "epoch", "epoch"]
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0  # already finished
    assert "nothing to train" in capsys.readouterr().out
    assert json.dumps(records[1]["config"]) == json.dumps(records[0]["config"] | {"max_steps": None})


def test_cli_reports_bad_data_folder(tmp_path, capsys) -> None:
    assert main(["train", "--data", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_command_trains_above_chance(tmp_path) -> None:
    """`inceptionnet train` with no arguments: the README's main command (minutes on 2 CPU cores)."""
    proc = subprocess.run(
        [sys.executable, "-m", "inceptionnet", "train", "--out-dir", str(tmp_path / "demo"), "--no-progress"],
        capture_output=True,
        text=True,
        check=True,
    )
    final = [r for r in read_metrics(tmp_path / "demo" / "metrics.jsonl") if r["kind"] == "epoch"][-1]
    assert 100 - final["val_top1_error"] >= 35, proc.stderr


def test_command_line_options_cover_the_config_and_resolve_presets() -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--lr", "0.1", "--no-channels-last", "--input-size", "99", "--epochs", "3"])
    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    assert given == {"lr": 0.1, "channels_last": False, "input_size": 99, "epochs": 3}  # only what was typed
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    for name in names:
        assert "--" + name.replace("_", "-") in help_text
    assert parser.parse_args(["train", "--grad-checkpointing"]).grad_checkpointing is True

    assert resolve_config(preset_name=None, overrides={}) == PRESETS["demo"]
    assert resolve_config(preset_name=None, overrides={"data": "/d"}) == replace(PRESETS["paper"], data="/d")
    stored = replace(PRESETS["demo"], max_steps=5, epochs=4).to_dict()
    assert resolve_config(preset_name=None, overrides={"epochs": 9}, stored=stored) == replace(
        PRESETS["demo"], epochs=9
    )
    with pytest.raises(ValueError, match="--preset cannot be combined with --resume"):
        resolve_config(preset_name="paper", overrides={}, stored=stored)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainConfig(ema_decay=1.0)


def _tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_events_match_the_metrics_and_each_step_shows_once(
    straight_run, make_train_config, tmp_path, after_step
) -> None:
    pytest.importorskip("tensorboard", reason="TensorBoard logging is optional (pip install tensorboard)")
    data, straight = straight_run
    scalars = _tensorboard_scalars(straight.out_dir / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    epochs = [r for r in read_metrics(straight.out_dir / "metrics.jsonl") if r["kind"] == "epoch"]
    assert [step for step, _ in scalars["epoch/val_top1_error"]] == [r["step"] for r in epochs]
    assert [value for _, value in scalars["epoch/val_top1_error"]] == pytest.approx(
        [r["val_top1_error"] for r in epochs]
    )

    # A crash after step 4 with the checkpoint at step 3 (the end of epoch 1): steps 4 and 5 are logged
    # twice by the two attempts; TensorBoard keeps the continued run's.
    def die() -> None:
        raise KeyboardInterrupt  # not handled by the loop: the process would die here

    cfg = make_train_config(data, tmp_path / "run")
    with after_step(4, then=die), pytest.raises(KeyboardInterrupt):
        train(cfg)
    train(cfg)
    again = _tensorboard_scalars(tmp_path / "run" / "tensorboard")
    assert [step for step, _ in again["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in again["train/loss"]] == pytest.approx([v for _, v in scalars["train/loss"]])
