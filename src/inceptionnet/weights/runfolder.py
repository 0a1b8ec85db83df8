"""A training run's folder: the name of every file in it, and reading them.

`inceptionnet train --out-dir RUN` writes, in RUN:

- `last.pt`, `previous.pt`, `best.pt`: training checkpoints (checkpoint.py: their format). `last.pt`
  is the latest; `previous.pt` its recovery copy (the last epoch end before it); `best.pt` the epoch
  with the lowest validation error.
- `model/`: a model folder (artifact.py), the network the run evaluated last.
- `metrics.jsonl`, `curves.png`, `tensorboard/`: the run's log (training/runlog.py).
- `owner.lock`: who trains there now (training/runlock.py).

These names appear here only; training writes the files (training/writer.py), every command that
takes a run as weights reads them through this module. As weights a run folder stands for its
model folder, else best.pt, else last.pt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inceptionnet.weights.artifact import is_model_folder
from inceptionnet.weights.checkpoint import load_checkpoint
from inceptionnet.weights.tags import WeightsError

LAST = "last.pt"
PREVIOUS = "previous.pt"
BEST = "best.pt"
CHECKPOINTS = (LAST, PREVIOUS, BEST)  # the checkpoints a run folder may hold
AS_WEIGHTS = (BEST, LAST)  # what a run folder without a model folder stands for as weights, in order
MODEL = "model"  # the model folder
METRICS = "metrics.jsonl"
CURVES = "curves.png"
TENSORBOARD = "tensorboard"
OWNER = "owner.lock"


@dataclass(frozen=True)
class RunFolder:
    """The folder of one training run, and the path of each of its files."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def previous(self) -> Path:
        return self.path / PREVIOUS

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def curves(self) -> Path:
        return self.path / CURVES

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def owner(self) -> Path:
        return self.path / OWNER

    def checkpoints(self) -> list[str]:
        """The names of the checkpoints the folder holds, in the order of CHECKPOINTS."""
        return [name for name in CHECKPOINTS if (self.path / name).exists()]

    def run_outputs(self) -> list[str]:
        """What shows that a run wrote here: its checkpoints and its metrics."""
        return [*self.checkpoints(), *([METRICS] if self.metrics.exists() else [])]

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl, in order (none when there is no such file)."""
        return read_metrics(self.metrics) if self.metrics.exists() else []

    def weights(self) -> Path:
        """What the run stands for as weights: its model folder, else best.pt, else last.pt."""
        if is_model_folder(self.model):
            return self.model
        for name in AS_WEIGHTS:
            if (self.path / name).is_file():
                return self.path / name
        raise WeightsError(
            f"{self.path} holds no trained network: no {MODEL}/ model folder, no {' and no '.join(AS_WEIGHTS)}. "
            "Pass a run folder whose training finished at least one evaluation, a checkpoint file, or a model folder"
        )


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (meaning its last.pt)."""
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).last
    if not path.is_file():
        raise WeightsError(f"no checkpoint at {path}; pass a checkpoint file or a run folder that holds {LAST}")
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at `path` (a file, or a run folder's last.pt), tensors on the CPU; no code is unpickled."""
    return load_checkpoint(checkpoint_file(path))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_weights(folder: Path) -> Path:
    """What a run folder stands for as weights (RunFolder.weights)."""
    return RunFolder(folder).weights()
