"""Restarts never lose a run: the same command continues it, another run's folder is refused, a failed save
keeps the previous checkpoint, previous.pt is a fallback, and torchrun's restart after a killed worker continues."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import typing
from dataclasses import Field, fields, replace
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from inceptionnet.cli import main
from inceptionnet.training import distributed
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.knobs import RESUME_RULES
from inceptionnet.training.rundir import MAY_CHANGE, RESUME_KEEPS, Resume, RunStart, plan_start, run_folder
from inceptionnet.weights.runfolder import read_checkpoint, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def _command(data: Path, out: Path, *extra: str, epochs: int = 2, batch_size: int = 3) -> list[str]:
    """A training command that logs every step; by default 2 epochs x 3 steps (10 images, batch 3)."""
    args = ["train", "--data", str(data), "--out-dir", str(out), "--model", "inception_v3", "--width", "0.125"]
    args += ["--input-size", "75", "--epochs", str(epochs), "--batch-size", str(batch_size), "--num-workers", "0"]
    return [*args, "--no-progress", "--lr", "0.01", "--ema-decay", "0.9", "--log-every", "1", *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_image_folder) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("restarts") / "data", train=5, val=2)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory, one_thread) -> Path:
    """The folder of the command `_command(data, folder)`, run once without interruption."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(_command(data, out)) == 0
    return out


def _hashes(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _same_weights(a: Path, b: Path) -> None:
    """The checkpoints a and b hold the same network and weight average, bit for bit, at the same position."""
    x, y = read_checkpoint(a), read_checkpoint(b)
    assert x["position"] == y["position"]
    for key in ("model", "ema"):
        assert x[key].keys() == y[key].keys()
        for name in x[key]:
            assert torch.equal(x[key][name], y[key][name]), f"{key}.{name}"


def _assert_each_record_once(folder: Path, *, epochs: int, steps: int) -> None:
    records = read_metrics(folder / "metrics.jsonl")
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == list(range(1, epochs + 1))
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, steps + 1))


def test_the_same_command_continues_after_sigterm_and_after_finishing(
    data, finished, tmp_path, after_step, capsys
) -> None:
    out = tmp_path / "run"
    with after_step(4):  # the second step of epoch 2: the stop is agreed after step 5, saved there
        assert main(_command(data, out)) == 128 + signal.SIGTERM
    assert "continue with the same command" in capsys.readouterr().err

    assert main(_command(data, out)) == 0
    said = capsys.readouterr().out
    assert f"{out} holds this run: continuing from {out / 'last.pt'} at epoch 2, step 5" in said
    _same_weights(out / "last.pt", finished / "last.pt")
    _same_weights(out / "best.pt", finished / "best.pt")
    _assert_each_record_once(out, epochs=2, steps=6)
    assert [r["resumed_from"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "run"] == [
        "",
        str(out / "last.pt"),
    ]

    before = _hashes(out)
    assert main(_command(data, out)) == 0  # the run has finished: nothing to do, nothing touched
    assert "nothing to train: the run has finished its 2 epochs" in capsys.readouterr().out
    assert _hashes(out) == before


def test_records_after_the_checkpoint_of_a_crashed_attempt_are_removed(data, finished, tmp_path, after_step) -> None:
    def crash() -> None:
        raise RuntimeError("simulated crash")

    out = tmp_path / "run"
    # steps 4 and 5 are logged; the last checkpoint is epoch 1's, at step 3
    with after_step(5, then=crash), pytest.raises(RuntimeError, match="simulated crash"):
        main(_command(data, out))
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "step"] == [1, 2, 3, 4, 5]
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"kind": "step", "st')  # and the crash tore the last line

    assert main(_command(data, out)) == 0
    _assert_each_record_once(out, epochs=2, steps=6)
    _same_weights(out / "last.pt", finished / "last.pt")


@pytest.mark.parametrize(
    "change",
    [["--model", "inception_v4"], ["--lr", "0.02"], ["--seed", "1"], ["--data", "OTHER"]],
    ids=["model", "lr", "seed", "data"],
)
def test_another_configuration_is_refused_and_touches_nothing(data, finished, tmp_path, change, capsys) -> None:
    before = _hashes(finished)
    if change == ["--data", "OTHER"]:
        change = ["--data", str(shutil.copytree(data, tmp_path / "other"))]
    assert main(_command(data, finished) + change) == 2
    err = capsys.readouterr().err
    assert f"error: {finished} holds the checkpoint of another run (last.pt: inception_v3 after epoch 2, step 6)" in err
    assert change[0].removeprefix("--") in err
    assert f"--resume {finished}" in err and "another --out-dir" in err
    assert _hashes(finished) == before


def test_options_that_may_change_continue_and_the_others_are_refused(finished, data) -> None:
    payload = read_checkpoint(finished)
    cfg = TrainConfig.from_dict(payload["config"])
    changed = {
        "out_dir": str(finished) + "/.",  # the same folder, spelt otherwise
        "epochs": 5,
        "max_steps": 9,
        "checkpoint_every": 2,
        "eval_every": 2,
        "log_every": 0,
        "progress": True,
        "num_workers": 1,
        "device": "cpu",
        "compile": True,
        "channels_last": True,
        "grad_checkpointing": True,
    }
    assert set(changed) == MAY_CHANGE
    for key, value in changed.items():
        start = _plan(replace(cfg, **{key: value}), resume=None, world_size=1)
        assert start.automatic and start.source == finished / "last.pt", key
    assert _plan(replace(cfg, data=str(data) + "/."), resume=None, world_size=1).automatic
    for key, value in {"width": 0.25, "batch_size": 2, "precision": "fp16", "ema_decay": 0.5}.items():
        with pytest.raises(ValueError, match=f"differs from it in {key} "):
            _plan(replace(cfg, **{key: value}), resume=None, world_size=1)
    with pytest.raises(ValueError, match=r"world_size \(1 there, 2 here\)"):
        _plan(cfg, resume=None, world_size=2)


def test_every_config_field_declares_its_help_and_what_a_continued_run_may_do() -> None:
    undeclared = [f.name for f in fields(TrainConfig) if f.metadata.get("resume") not in RESUME_RULES]
    assert not undeclared, f"declare resume= ({', '.join(RESUME_RULES)}) for {undeclared}: config.py, knob"
    assert all(f.metadata.get("help") for f in fields(TrainConfig))
    kept = ["aux_weight", "freeze", "image_column", "label_column", "label_mode", "model", "optimizer"]
    kept += ["pretrained_lr_scale", "residual_scale", "width"]
    assert sorted(RESUME_KEEPS) == kept  # what the checkpoint's network and optimiser state were built with


def _another_value(cfg: TrainConfig, f: Field) -> typing.Any:
    """A valid value of field `f` that differs from `cfg`'s."""
    value, kind = getattr(cfg, f.name), typing.get_type_hints(TrainConfig)[f.name]
    if typing.get_origin(kind) is typing.Literal:
        return next(choice for choice in typing.get_args(kind) if choice != value)
    if kind is bool:
        return not value
    if int in (kind, *typing.get_args(kind)):
        return (value or 0) + 1
    if float in (kind, *typing.get_args(kind)):
        return (value or 1.0) / 2
    return f"{value}-other"


def test_each_field_not_declared_may_change_is_refused_and_kept_ones_even_by_resume(finished) -> None:
    cfg = TrainConfig.from_dict(read_checkpoint(finished)["config"])
    for f in fields(TrainConfig):
        if f.metadata["resume"] == "may_change":
            continue  # test_options_that_may_change_continue_and_the_others_are_refused
        changed = replace(cfg, **{f.name: _another_value(cfg, f)})
        with pytest.raises(ValueError, match=f"differs from it in {f.name} "):
            _plan(changed, resume=None, world_size=1)
        if f.metadata["resume"] == "kept":
            with pytest.raises(ValueError, match=f"--resume cannot change {f.name} "):
                _plan(changed, resume=finished, world_size=1)
        else:
            assert _plan(changed, resume=finished, world_size=1).source == finished / "last.pt", f.name


def test_the_documented_tables_of_options_are_the_declared_ones() -> None:
    text = (Path(__file__).parents[1] / "docs" / "training.md").read_text(encoding="utf-8")

    def options_in_table(header: str) -> set[str]:
        table = text.split(header, 1)[1].split("\n\n", 1)[0]
        return {name.replace("-", "_") for name in re.findall(r"`--([a-z-]+)`", table)}

    assert options_in_table("| may change | why it is safe |") == MAY_CHANGE
    assert options_in_table("| kept, even by `--resume` |") == RESUME_KEEPS


def test_a_folder_with_only_another_runs_metrics_or_checkpoints_is_refused(finished, tmp_path) -> None:
    cfg = TrainConfig.from_dict(read_checkpoint(finished)["config"])
    metrics_only = tmp_path / "metrics_only"
    metrics_only.mkdir()
    shutil.copy(finished / "metrics.jsonl", metrics_only)
    assert _plan(replace(cfg, out_dir=str(metrics_only)), resume=None, world_size=1).source is None
    with pytest.raises(ValueError, match=r"holds the metrics of another run .* lr"):
        _plan(replace(cfg, out_dir=str(metrics_only), lr=0.5), resume=None, world_size=1)
    best_only = tmp_path / "best_only"
    best_only.mkdir()
    shutil.copy(finished / "best.pt", best_only)
    with pytest.raises(ValueError, match=f"holds best.pt but no last.pt.*--resume {best_only / 'best.pt'}"):
        _plan(replace(cfg, out_dir=str(best_only)), resume=None, world_size=1)
    # --resume into a folder that holds another run's checkpoints
    with pytest.raises(ValueError, match=f"{best_only} holds the outputs of another run \\(best.pt\\)"):
        _plan(replace(cfg, out_dir=str(best_only)), resume=finished, world_size=1)


def test_torchrun_restarts_need_a_fixed_out_dir(finished, monkeypatch) -> None:
    cfg = replace(TrainConfig.from_dict(read_checkpoint(finished)["config"]), out_dir=None)
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")
    with pytest.raises(ValueError, match="pass a fixed --out-dir"):
        _plan(cfg, resume=None, world_size=1)


def test_previous_pt_is_the_epoch_before_and_the_fallback_of_a_damaged_last_pt(
    data, finished, tmp_path, capsys
) -> None:
    assert read_checkpoint(finished / "previous.pt")["position"]["step"] == 3  # epoch 1's end
    out = shutil.copytree(finished, tmp_path / "run")
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:1000])  # damaged on disk
    before = _hashes(out)
    assert main(_command(data, out)) == 2
    err = capsys.readouterr().err
    assert f"{out / 'last.pt'} cannot be read as a checkpoint" in err
    assert f"--resume {out / 'previous.pt'}" in err
    assert _hashes(out) == before

    assert main(["train", "--resume", str(out / "previous.pt"), "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    _same_weights(out / "last.pt", finished / "last.pt")
    _same_weights(out / "previous.pt", finished / "previous.pt")
    _assert_each_record_once(out, epochs=2, steps=6)


def test_a_failed_save_stops_the_run_and_keeps_the_previous_checkpoint(
    data, finished, tmp_path, monkeypatch, capsys
) -> None:
    real_save = torch.save
    saves = []

    def disk_full_on_the_third_save(obj, f, *args, **kwargs) -> None:
        saves.append(1)
        if len(saves) < 3:  # epoch 1's last.pt and best.pt; then epoch 2's last.pt fails
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # half the bytes reach the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full_on_the_third_save)
    out = tmp_path / "run"
    assert main(_command(data, out)) == 1
    err = capsys.readouterr().err
    assert f"error: could not write {out / 'last.pt'}: No space left on device" in err
    assert "is as it was before this write" in err and "free space" in err
    monkeypatch.setattr(torch, "save", real_save)
    _same_weights(out / "last.pt", finished / "previous.pt")  # epoch 1's, intact and loadable
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    assert main(_command(data, out)) == 0  # the same command goes on from there
    _same_weights(out / "last.pt", finished / "last.pt")
    _assert_each_record_once(out, epochs=2, steps=6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_process_group_that_cannot_form_fails_instead_of_hanging(monkeypatch) -> None:
    # Rank 0 of 2, and no rank 1 ever comes.
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": _free_port()}
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    with pytest.raises(RuntimeError, match=r"rank 0 could not form the process group of 2 processes within 0:00:01"):
        distributed.setup("cpu", timeout=timedelta(seconds=1))
    # Across machines, torchrun's agents count restarts each on its own: a shared store is refused.
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
        distributed.setup("cpu", timeout=timedelta(seconds=1))


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int | None:
    """The RANK that torchrun gave the worker `pid`, from its environment."""
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((int(v[5:]) for v in env if v.startswith(b"RANK=")), None)


def _torchrun(data: Path, out: Path) -> list[str]:
    # 12 images on 2 processes of batch 2: 3 steps per epoch; a checkpoint after every step.
    command = _command(data, out, "--checkpoint-every", "1", "--device", "cpu", epochs=3, batch_size=2)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", "1"]
    return [*launcher, "-m", "inceptionnet", *command]


@pytest.mark.slow  # about 25 s; .ci/run runs it
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers in /proc (Linux)")
def test_torchrun_restarts_a_killed_worker_and_the_run_continues(tmp_path, make_image_folder) -> None:
    data = make_image_folder(tmp_path / "data", train=6, val=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.run(_torchrun(data, tmp_path / "reference"), env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "run"
    job = subprocess.Popen(_torchrun(data, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not (out / "last.pt").exists() and job.poll() is None:  # written after step 1
            time.sleep(0.02)
        killed = [pid for pid in _children(job.pid) if _rank_of(pid) == 1]
        assert len(killed) == 1, "rank 1 not found among torchrun's workers"
        os.kill(killed[0], signal.SIGKILL)
        log, _ = job.communicate(timeout=240)
    finally:
        job.kill()
    assert job.returncode == 0, log[-3000:]
    assert f"{out} holds this run: continuing from {out / 'last.pt'}" in log
    _same_weights(out / "last.pt", tmp_path / "reference" / "last.pt")
    _assert_each_record_once(out, epochs=3, steps=9)


@pytest.mark.parametrize(("option", "value"), [("--model", "inception_v4"), ("--pretrained-lr-scale", "0.1")])
def test_resume_refuses_options_the_checkpoint_was_built_with(finished, capsys, option: str, value: str) -> None:
    before = _hashes(finished)
    assert main(["train", "--resume", str(finished), option, value, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--resume cannot change" in err and option.lstrip("-").replace("-", "_") in err
    assert _hashes(finished) == before


def _plan(cfg: TrainConfig, *, resume: Path | None, world_size: int) -> RunStart:
    """What `train` decides before it builds anything: the folder, then how the command begins there."""
    checkpoint = Resume.read(resume) if resume is not None else None
    folder = run_folder(cfg, resume=checkpoint)
    return plan_start(cfg, resume=checkpoint, world_size=world_size, folder=folder)
