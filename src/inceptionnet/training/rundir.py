"""A run's output folder: what it holds, and whether a training command starts, continues or is refused there.

A folder belongs to one run. A command without `--resume` whose folder holds a checkpoint
(`last.pt`) continues that run when the command's configuration is the run's, up to the fields
declared `resume="may_change"` (config.py): running the same command again, as a scheduler's
requeue or torchrun's restart does, loses nothing. A command whose configuration differs in
anything else is refused, and so is one whose folder holds a checkpoint that cannot be read: no
command overwrites another run's checkpoints. `--resume PATH` continues the run of PATH with
whatever options the command changes, except the fields declared `resume="kept"`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inceptionnet.training import checkpoint
from inceptionnet.training.config import TrainConfig, config_changes, declared_fields
from inceptionnet.weights.checkpoint import load_checkpoint
from inceptionnet.weights.runfolder import LAST, RunFolder, checkpoint_file

# The options a command may change and still continue the run in its folder, and those that not even
# --resume may change: each TrainConfig field declares which (config.py, `resume=`).
MAY_CHANGE = declared_fields(resume="may_change")
RESUME_KEEPS = declared_fields(resume="kept")


@dataclass(frozen=True)
class Resume:
    """A checkpoint to continue (`--resume PATH`), read once: its file and its contents."""

    source: Path
    payload: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> Resume:
        """The checkpoint at `path`: a file, or a run folder (its last.pt)."""
        source = checkpoint_file(path)
        return cls(source, load_checkpoint(source))


@dataclass(frozen=True)
class RunStart:
    """Where a run writes, the checkpoint it continues from (None: a new run) and what this command changes."""

    folder: RunFolder
    source: Path | None = None
    payload: dict[str, Any] | None = None  # the checkpoint's contents
    automatic: bool = False  # continued because the folder held this run's checkpoint (no --resume)
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # {option: (the checkpoint's, this command's)}


def run_folder(cfg: TrainConfig, *, resume: Resume | None) -> RunFolder:
    """The folder a command writes in: `cfg.out_dir`, else `resume`'s folder, else a new one (named by the time)."""
    if resume is not None and not cfg.out_dir:
        return RunFolder(resume.source.parent)
    return RunFolder(_out_dir(cfg))


def plan_start(cfg: TrainConfig, *, resume: Resume | None, world_size: int, folder: RunFolder) -> RunStart:
    """Decide how a command begins in `folder` (run_folder, claimed: runlock.py): continue `resume`, continue
    the run in the folder, or start a new run.

    Raises ValueError, touching nothing, when the folder holds another run (or an unreadable checkpoint).
    """
    if resume is not None:
        return _explicit_resume(cfg, resume, folder, world_size)
    if not folder.last.exists():
        _refuse_leftovers(folder, cfg)
        return RunStart(folder)
    payload = _read_last(folder)
    differences = run_changes(payload, cfg, world_size=world_size)
    fixed = {key: change for key, change in differences.items() if key not in MAY_CHANGE}
    if fixed:
        listed = ", ".join(f"{key} ({was!r} there, {now!r} here)" for key, (was, now) in fixed.items())
        raise ValueError(
            f"{folder.path} holds the checkpoint of another run ({LAST}: {checkpoint.describe(payload)}); this "
            f"command differs from it in {listed}. Nothing was changed. To continue that run with this command's "
            f"options, pass --resume {folder.path}; to train this configuration, choose another --out-dir"
        )
    return RunStart(folder, folder.last, payload, automatic=True, changes=differences)


def run_changes(payload: dict[str, Any], cfg: TrainConfig, *, world_size: int) -> dict[str, tuple[Any, Any]]:
    """{option: (the checkpoint's value, this command's)} for what differs, the number of processes included.

    The same folder given as another path is no change.
    """
    changes = config_changes(TrainConfig.from_dict(payload["config"]), cfg)
    for key in ("data", "out_dir"):
        if key in changes and _same_path(*changes[key]):
            del changes[key]
    stored_world = payload["world_size"]
    if stored_world != world_size:
        changes["world_size"] = (stored_world, world_size)
    return changes


def _explicit_resume(cfg: TrainConfig, resume: Resume, folder: RunFolder, world_size: int) -> RunStart:
    """`--resume PATH`: the run of PATH, in `folder` (its folder unless `cfg.out_dir` names another), free of
    another run."""
    changes = run_changes(resume.payload, cfg, world_size=world_size)
    kept = {k: v for k, v in changes.items() if k in RESUME_KEEPS}
    if kept:
        listed = ", ".join(f"{key} ({was!r} in the checkpoint, {now!r} here)" for key, (was, now) in kept.items())
        raise ValueError(
            f"--resume cannot change {listed}: the checkpoint's network and optimiser state were built with "
            f"them. Resume without those options, or start a new run with them in another --out-dir"
        )
    if not _same_path(folder.path, resume.source.parent):
        held = folder.run_outputs()
        if held:
            raise ValueError(
                f"{folder.path} holds the outputs of another run ({', '.join(held)}); continuing {resume.source} "
                f"there would overwrite them. Choose an --out-dir without them, or continue that folder's run "
                f"with --resume {folder.path}"
            )
    return RunStart(folder, resume.source, resume.payload, changes=changes)


def _out_dir(cfg: TrainConfig) -> Path:
    """The configured folder, or a new one named by the model and the time.

    Under `torchrun --max-restarts N` the restarted processes must find the checkpoint, which a
    folder named by the time of each start would hide from them.
    """
    if cfg.out_dir:
        return Path(cfg.out_dir)
    if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0:
        raise ValueError(
            "torchrun --max-restarts restarts the processes, which continue from the run's checkpoint only if "
            "they find it: pass a fixed --out-dir"
        )
    return Path(f"runs/{cfg.model}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")


def _read_last(folder: RunFolder) -> dict[str, Any]:
    """The folder's last.pt, or an error naming the recovery copy when it cannot be read."""
    try:
        return load_checkpoint(folder.last)
    except Exception as err:  # a damaged file fails in the unpickler, the zip reader or our own check
        previous = folder.previous
        if previous.exists():
            fallback = f"continue from its recovery copy with --resume {previous} (the last epoch end before it)"
        else:
            fallback = f"there is no recovery copy {previous.name} there"
        raise ValueError(
            f"{folder.last} cannot be read as a checkpoint ({type(err).__name__}: {err}). Nothing was changed: "
            f"{fallback}, or train in another --out-dir"
        ) from err


def _refuse_leftovers(folder: RunFolder, cfg: TrainConfig) -> None:
    """A folder without last.pt may still hold another run: its other checkpoints, or its metrics."""
    held = folder.checkpoints()
    if held:
        raise ValueError(
            f"{folder.path} holds {', '.join(held)} but no {LAST}. Nothing was changed: continue that run "
            f"with --resume {folder.path / held[0]}, or choose another --out-dir"
        )
    stored = _metrics_config(folder)
    if stored is None:
        return
    fixed = [key for key in config_changes(stored, cfg) if key not in MAY_CHANGE]
    if fixed and not (fixed == ["data"] and _same_path(stored.data, cfg.data)):
        raise ValueError(
            f"{folder.path} holds the metrics of another run (no checkpoint yet), which differs from this command in "
            f"{', '.join(fixed)}. Nothing was changed: choose another --out-dir"
        )


def _metrics_config(folder: RunFolder) -> TrainConfig | None:
    """The configuration of the last "run" record of the folder's metrics file, if it has one."""
    if not folder.metrics.exists():
        return None
    configs = []
    for line in folder.metrics.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "run" and "config" in rec:
            configs.append(rec["config"])
    return TrainConfig.from_dict(configs[-1]) if configs else None


def _same_path(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two paths name the same file or folder (None: the built-in demo data, equal only to None)."""
    if a is None or b is None:
        return a is b
    return Path(a).resolve() == Path(b).resolve()
