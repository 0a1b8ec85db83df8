"""`inceptionnet calibrate`: a trained network's temperature and unknown-image threshold, fitted on validation
images and written into its card.

The same fit runs at the end of every evaluation of a training run (training/loop.py), on the logits
that validation computes; `calibrate` runs it for runs and model folders that exist already, on a
validation split named by `--data` (one central view per image, as predict and serve see images:
logits.py). Only single-label networks are calibrated (calibration.py says why).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from inceptionnet.card import DEFAULT_KNOWN_KEPT, ModelCard, UnknownRule
from inceptionnet.evaluation.calibration import CalibrationCheck, check_calibration, fit_temperature
from inceptionnet.evaluation.logits import split_logits
from inceptionnet.evaluation.unknown import DEFAULT_SCORE, fit_unknown_rule
from inceptionnet.factory import load_model
from inceptionnet.models.outputs import unknown_scores
from inceptionnet.weights import save_model_folder
from inceptionnet.weights.artifact import is_model_folder, update_folder_card
from inceptionnet.weights.runfolder import RunFolder


@dataclass(frozen=True)
class Calibrated:
    """What a calibration fitted (the card with it) and what it measured on the images it was fitted on."""

    card: ModelCard
    check: CalibrationCheck
    skipped: int  # unreadable images

    @property
    def unknown(self) -> UnknownRule:
        assert self.card.unknown is not None
        return self.card.unknown

    def describe(self) -> str:
        rule = self.unknown
        return (
            f"{self.check.describe()}\nunknown-image threshold: {rule.score} below {rule.threshold:.6g} "
            f"(keeps {100 * rule.known_kept:g}% of these known images)"
        )


def fit_calibration(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    score: str = DEFAULT_SCORE,
    known_kept: float = DEFAULT_KNOWN_KEPT,
) -> tuple[float, UnknownRule]:
    """The temperature and the unknown-image rule fitted on known images' `logits` and classes (output indices)."""
    temperature = fit_temperature(logits, targets)
    known = unknown_scores(logits, score, temperature=temperature)
    return temperature, fit_unknown_rule(known, score=score, known_kept=known_kept)


def calibrate_network(
    model: torch.nn.Module,
    data: str | os.PathLike[str],
    *,
    score: str = DEFAULT_SCORE,
    known_kept: float = DEFAULT_KNOWN_KEPT,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
) -> Calibrated:
    """Fit `model`'s calibration on the labelled split `data`; the network is left as it was (see `.card`)."""
    card: ModelCard | None = getattr(model, "card", None)
    if card is None:
        raise ValueError("calibration needs one of our networks (it writes the result into the network's card)")
    if card.label_mode == "multi":
        raise ValueError(
            "a multi-label network is calibrated by its per-class thresholds, which training tunes on its validation "
            "images (docs/calibration.md); there is no temperature or unknown-image threshold to fit"
        )
    got = split_logits(model, data, batch_size=batch_size, workers=workers, device=device, max_images=max_images)
    assert got.targets is not None
    temperature, rule = fit_calibration(got.logits, got.targets, score=score, known_kept=known_kept)
    check = check_calibration(got.logits, got.targets, temperature)
    return Calibrated(card.replace(temperature=temperature, unknown=rule), check, got.skipped)


def model_folder_of(path: str | os.PathLike[str]) -> Path:
    """The model folder that `path` names: a model folder, or a training run folder (its model/); else a
    ValueError naming what calibrate writes into."""
    folder = Path(path)
    if is_model_folder(folder):
        return folder
    if is_model_folder(RunFolder(folder).model):
        return RunFolder(folder).model
    raise ValueError(
        f"{path} is neither a model folder nor a training run with a model folder: calibrate writes the fitted values "
        "into one. For other weights (a file, a tag) add --output DIR to write a calibrated model folder there"
    )


def calibrate(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    score: str = DEFAULT_SCORE,
    known_kept: float = DEFAULT_KNOWN_KEPT,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
) -> tuple[Calibrated, Path]:
    """Calibrate the network of `model` (a run folder, a model folder, or with `output` any model specification)
    on the split `data` and write it: into the model folder in place (config.json and the weights' header; the
    weights unchanged), or as a new model folder `output`. The other options are calibrate_network's. Returns
    what was fitted and the folder written."""
    target = Path(output) if output is not None else model_folder_of(model)
    network = load_model(os.fspath(model), pretrained=True)
    fit = {"score": score, "known_kept": known_kept, "batch_size": batch_size, "workers": workers}
    done = calibrate_network(network, data, **fit, device=device, max_images=max_images)
    if output is None:
        update_folder_card(target, temperature=done.card.temperature, unknown=done.card.unknown)
        return done, target
    network.apply_card(done.card)
    return done, save_model_folder(target, network)
