"""Training runs as weights: what a run folder stands for.

A run folder (`inceptionnet train --out-dir RUN`) holds `model/` (a model folder, artifact.py: the
weights the run evaluated last) and its training checkpoints (checkpoint.py). As weights it stands
for its model folder, else best.pt, else last.pt; a checkpoint is read as weights by checkpoint.py.
"""

from __future__ import annotations

from pathlib import Path

from inceptionnet.weights.artifact import is_model_folder
from inceptionnet.weights.checkpoint import RUN_CHECKPOINTS
from inceptionnet.weights.tags import WeightsError

RUN_MODEL = "model"  # the model folder inside a run folder


def run_weights(folder: Path) -> Path:
    """What a run folder stands for as weights: its model folder, else best.pt, else last.pt."""
    if is_model_folder(folder / RUN_MODEL):
        return folder / RUN_MODEL
    for name in RUN_CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(
        f"{folder} holds no trained network: no {RUN_MODEL}/ model folder, no {' and no '.join(RUN_CHECKPOINTS)}. "
        "Pass a run folder whose training finished at least one evaluation, a checkpoint file, or a model folder"
    )
