"""What docs/training.md ("Slurm") and docs/export.md ("Many images") say of Slurm jobs, shown on the
local cluster with the scripts of deploy/slurm/ (slurmcheck.scripts: as written but for their sizes).

A: train.sbatch submitted with a 2-minute limit and `--signal=TERM@60`: the warning comes before the
   limit; the job stops with a checkpoint (the workers' "stopped by SIGTERM") and ends FAILED with
   exit code 1, torchrun's, which does not pass its workers' 143 on.
R: the same script into another folder, never interrupted: the reference.
C: the same script submitted again into A's folder (what a user does after a time limit): it
   continues from A's checkpoint; `scontrol requeue` while it trains stops it with a checkpoint, and
   the requeued job continues from that one and finishes: each epoch and step once in metrics.jsonl,
   the weights and weight average equal to R's, bit for bit.
P: predict.sbatch over a folder: each image once, as one process predicts them.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inceptionnet import create_model
from inceptionnet.cli import main as inceptionnet_main
from inceptionnet.data import DEMO_DATA
from inceptionnet.inference.batchjob import read_records
from inceptionnet.models import Preprocessing
from inceptionnet.weights import save_weights
from inceptionnet.weights.runfolder import read_checkpoint, read_metrics
from slurmcheck import scripts
from slurmcheck.cluster import LocalSlurm
from slurmcheck.jobs import Job, JobError, submit

# 6 images per class of 2: 3 steps of 2 processes x 2 images per epoch. The warning of a 2-minute limit
# with TERM@60 comes 30 to 60 s after the start (slurmctld looks at time limits every 30 s), so an
# uninterrupted run must train for longer than that: 50 epochs, about 65 s on 2 cores.
PER_CLASS, EPOCHS, STEPS_PER_EPOCH = 6, 50, 3
WARNING = ("--time=2", "--signal=TERM@60")
STOPPED = r"stopped by SIGTERM at step (\d+) \(epoch (\d+)\); checkpoint (\S+)"


class ClaimError(RuntimeError):
    """What a job showed is not what the docs say."""


def require(holds: bool, what: object = "") -> None:
    """Fail the check with `what` (the values that showed it) unless `holds`."""
    if not holds:
        raise ClaimError(str(what))


@dataclass(frozen=True)
class Setup:
    slurm: LocalSlurm
    data: Path
    env: dict[str, str]  # the jobs' environment, on top of the cluster's

    def train_script(self, out: Path) -> str:
        changes = scripts.train_changes(data=self.data, out=out, epochs=EPOCHS)
        return scripts.sized(scripts.TRAIN.read_text(), changes)


def image_folder(root: Path) -> Path:
    """root/train/<class>/ (PER_CLASS images of 2 classes) and root/val/<class>/ (2 each), from the demo data."""
    for split, count in (("train", PER_CLASS), ("val", 2)):
        for name in sorted(p.name for p in (DEMO_DATA / split).iterdir())[:2]:
            (root / split / name).mkdir(parents=True)
            for image in sorted((DEMO_DATA / split / name).iterdir())[:count]:
                shutil.copy(image, root / split / name / image.name)
    return root


def job_environment(root: Path, venv_bin: Path, src: Path) -> dict[str, str]:
    """What the jobs run with: this venv's torchrun and Python, this source tree, one thread per process,
    and every cache and temporary file inside the check's folder."""
    cache = root / "cache"
    (root / "tmp").mkdir(exist_ok=True)
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "PYTHONPATH": str(src),
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(root / "tmp"),
        "XDG_CACHE_HOME": str(cache),
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "INCEPTIONNET_ENGINE_CACHE": str(cache / "engines"),
    }


def stopped_line(job: Job, *, after: int = 0) -> tuple[int, re.Match[str]]:
    found = job.wait_for_line(STOPPED, after=after)
    return int(found.group(1)), found


def start_warned(setup: Setup, out: Path) -> Job:
    """A, once it has trained an epoch (so the warning cannot come before the workers listen for it)."""
    job = submit(setup.slurm, setup.train_script(out), "warned", *WARNING, env=setup.env)
    job.wait_for_line(r"epoch +1/")
    return job


def stopped_by_the_warning(job: Job, out: Path) -> dict:
    """A: the time-limit warning stops the job before its limit, with a checkpoint at the step it names."""
    info = job.wait("FAILED", "COMPLETED")
    step, _ = stopped_line(job)
    saved = read_checkpoint(out / "last.pt")["position"]["step"]
    run_s = _seconds(info["RunTime"])
    require(0 < step < EPOCHS * STEPS_PER_EPOCH, f"stopped at step {step} of {EPOCHS * STEPS_PER_EPOCH}")
    require(saved == step, f"last.pt is at step {saved}, the job said {step}")
    require(run_s < 120, f"ran {run_s} s: the time limit, not the warning, ended it")
    require((info["JobState"], info["ExitCode"]) == ("FAILED", "1:0"), info)
    return {"stopped_at_step": step, "checkpoint_step": saved, "run_s": run_s, "time_limit_s": 120}


def requeue_continues(setup: Setup, out: Path, *, from_step: int) -> dict:
    """C: the same script continues from the checkpoint; a requeue while it trains stops it with a new one,
    and the requeued job continues from that and finishes."""
    job = submit(setup.slurm, setup.train_script(out), "continued", env=setup.env)
    continuing = re.escape(f"continuing from {out / 'last.pt'}") + r" at epoch \d+, step {}\b"
    job.wait_for_line(continuing.format(from_step))
    _wait_for_step(out, from_step + 2)
    setup.slurm.run(["scontrol", "requeue", job.id])
    requeued_at, line = stopped_line(job)
    pending = job.wait("PENDING")
    # Slurm 22.05 holds a requeued job for about 2 minutes (Reason=BeginTime); let it start now.
    setup.slurm.run(["scontrol", "update", f"JobId={job.id}", "StartTime=now"])
    job.wait_for_line(continuing.format(requeued_at), after=line.end())
    info = job.wait("COMPLETED", timeout=600)
    require(info["ExitCode"] == "0:0" and pending["Restarts"] == "1", (info, pending))
    return {"continued_from_step": from_step, "requeued_at_step": requeued_at, "restarts": int(info["Restarts"])}


def same_as_uninterrupted(run: Path, reference_job: Job, reference: Path) -> dict:
    """The run that stopped twice equals R, which never stopped: weights, weight average and position."""
    info = reference_job.wait("COMPLETED", timeout=600)
    require(info["ExitCode"] == "0:0", info)
    records = read_metrics(run / "metrics.jsonl")
    epochs = [r["epoch"] for r in records if r["kind"] == "epoch"]
    steps = [r["step"] for r in records if r["kind"] == "step"]
    require(epochs == list(range(1, EPOCHS + 1)), epochs)
    require(steps == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1)), steps)
    a, b = read_checkpoint(run / "last.pt"), read_checkpoint(reference / "last.pt")
    require(a["position"] == b["position"], (a["position"], b["position"]))
    for key in ("model", "ema"):
        unequal = [name for name in a[key] if not torch.equal(a[key][name], b[key][name])]
        require(a[key].keys() == b[key].keys() and not unequal, f"{key} differs in {unequal[:5]}")
    starts = [r["resumed_from"] for r in records if r["kind"] == "run"]
    require(starts == ["", str(run / "last.pt"), str(run / "last.pt")], starts)  # stopped, continued, requeued
    return {"epochs": len(epochs), "steps": len(steps), "attempts": len(starts), "weights_equal": True}


def tiny_weights(path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("inception_v3", num_classes=2, width=0.125)
    model.preprocessing = Preprocessing(input_size=75)
    return save_weights(model, path)


def predict_each_image_once(setup: Setup, root: Path) -> dict:
    """P: predict.sbatch writes each image of the folder once, with one process's predictions."""
    weights, out = tiny_weights(root / "tiny.safetensors"), root / "predictions" / "photos.jsonl"
    changes = scripts.predict_changes(images=setup.data, weights=weights, out=out)
    job = submit(setup.slurm, scripts.sized(scripts.PREDICT.read_text(), changes), "predict", env=setup.env)
    info = job.wait("COMPLETED", timeout=600)
    alone = root / "predictions" / "one-process.jsonl"
    options = ["--model", str(weights), "--device", "cpu", "--engine", "torch", "--json", str(alone)]
    inceptionnet_main(["predict", str(setup.data), *options])
    got, expected = read_records(out), read_records(alone)
    paths = [r["path"] for r in got]
    images = sorted(str(p) for p in setup.data.rglob("*.jpg"))
    require(paths == sorted(set(paths)) == images, "each image once")
    for a, b in zip(got, expected, strict=True):
        require([t["index"] for t in a["top"]] == [t["index"] for t in b["top"]], a["path"])
    return {"images": len(paths), "exit_code": info["ExitCode"]}


def _wait_for_step(out: Path, step: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "metrics.jsonl").exists():
            steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "step"]
            if steps and steps[-1] >= step:
                return
        time.sleep(0.3)
    raise JobError(f"{out / 'metrics.jsonl'} has no step {step} after {timeout:.0f} s")


def _seconds(duration: str) -> int:
    """Slurm's [D-]HH:MM:SS (or MM:SS) as seconds."""
    days, _, clock = duration.rpartition("-")
    parts = [int(x) for x in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
