"""Running a study: every (seed, arm) run not finished yet, resumable, then its results."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inceptionnet.atomic import atomic_write
from inceptionnet.study.design import STATUS, Study, describe
from inceptionnet.study.report import write_results
from inceptionnet.training.faults import TrainingDiverged
from inceptionnet.training.loop import train
from inceptionnet.weights.runfolder import RunFolder


def run_study(study: Study, out_dir: str | Path, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every (seed, arm) run not finished yet, then write the tables, the plot and the summary.

    SIGTERM or Ctrl-C stops the current run with a checkpoint; the results of the runs that have
    ended are written all the same (`summary["complete"]` is False), and the same call continues.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "study.json").write_text(json.dumps(describe(study), indent=2) + "\n", encoding="utf-8")
    total = len(study.arms) * len(study.seeds)
    for n, (seed, arm) in enumerate(((s, a) for s in study.seeds for a in study.arms), start=1):
        cfg = study.run_config(arm, seed, out_dir)
        folder = Path(cfg.out_dir)
        if (folder / STATUS).exists():
            say(f"[{n}/{total}] {arm.label}, seed {seed}: done earlier ({folder})")
            continue
        resume = folder if RunFolder(folder).last.exists() else None
        say(f"[{n}/{total}] {arm.label}, seed {seed}: {'resuming' if resume else 'training'} in {folder}")
        try:
            result = train(cfg, resume=resume)
        except TrainingDiverged as err:
            _write_status(folder, "diverged", str(err))
            say(f"  diverged: {err}")
            continue
        if result.stopped_by is not None:  # a signal: report what has finished, stay resumable
            say(f"study stopped by {result.stopped_by}; run the same command again to continue")
            break
        _write_status(folder, "finished", "")
    return write_results(study, out_dir)


def _write_status(folder: Path, status: str, message: str) -> None:
    # The status file marks a run as ended: a rerun skips it, so a torn file must never exist.
    atomic_write(folder / STATUS, (json.dumps({"status": status, "message": message}) + "\n").encode("utf-8"))
