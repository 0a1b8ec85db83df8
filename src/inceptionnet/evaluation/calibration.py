"""Temperature scaling: one number that makes a single-label network's probabilities mean what they say.

Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017): the probabilities become
softmax(logits / T), with the one scalar T > 0 that minimises the negative log-likelihood of validation
images. T divides every logit alike, so the ranking of the classes, top-1 and top-5 do not change; only
how confident the network says it is. T > 1 softens an overconfident network, T < 1 sharpens an
underconfident one. The fit is torch's L-BFGS on log T (so T stays positive), in float64, from T = 1.

Multi-label networks get no temperature: their per-class thresholds (tuned for F1 on validation
images) are their calibration, and a temperature on the sigmoids would move every probability under
those thresholds (docs/calibration.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from inceptionnet.evaluation.report import CALIBRATION_BINS, calibration
from inceptionnet.models.outputs import scaled_logits

MAX_ITERATIONS = 200  # L-BFGS iterations; the one-dimensional fit converges in a few dozen
# Where the fit may end. A validation set the network separates perfectly drives T towards 0 (every
# probability towards 0 or 1); a tiny one can drive it anywhere: the bounds keep a usable number.
TEMPERATURE_RANGE = (0.05, 20.0)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature T minimising the mean cross-entropy of softmax(logits / T) against `targets` (class indices),
    within TEMPERATURE_RANGE. A ValueError names the problem when there is nothing to fit: no images, or logits
    that are not finite numbers."""
    if len(logits) == 0:
        raise ValueError("no validation image to fit the temperature on; check the --data split")
    if not torch.isfinite(logits).all():
        raise ValueError("the logits hold NaN or infinite values: no temperature fits them; check the network")
    z, y = logits.detach().double(), targets.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    solver = torch.optim.LBFGS([log_t], lr=1.0, max_iter=MAX_ITERATIONS, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        solver.zero_grad()
        value = F.cross_entropy(z / log_t.exp(), y)
        value.backward()
        return value

    solver.step(loss)
    temperature = float(log_t.detach().exp())
    low, high = TEMPERATURE_RANGE
    return min(max(temperature, low), high) if math.isfinite(temperature) else high


@dataclass(frozen=True)
class CalibrationCheck:
    """A network's calibration on some images, with its logits as they are and divided by `temperature`."""

    temperature: float
    images: int
    ece_before: float  # expected calibration error (CALIBRATION_BINS equal-width bins of the top probability)
    ece_after: float
    nll_before: float  # mean negative log-likelihood of the true class
    nll_after: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}

    def describe(self) -> str:
        return (
            f"temperature {self.temperature:.4f} on {self.images} images: expected calibration error "
            f"{self.ece_before:.4f} -> {self.ece_after:.4f}, negative log-likelihood {self.nll_before:.4f} -> "
            f"{self.nll_after:.4f}"
        )


def expected_calibration_error(logits: torch.Tensor, targets: torch.Tensor, temperature: float | None = None) -> float:
    """The expected calibration error of softmax(logits / temperature) (the report's, `report.calibration`)."""
    probs = scaled_logits(logits.double(), temperature).softmax(dim=-1)
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == targets).numpy()
    return calibration(confidence.numpy(), correct, CALIBRATION_BINS).ece


def check_calibration(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> CalibrationCheck:
    """The calibration error and log-likelihood of `logits` before and after dividing them by `temperature`."""
    z, y = logits.double(), targets.long()
    return CalibrationCheck(
        temperature=temperature,
        images=len(z),
        ece_before=expected_calibration_error(z, y),
        ece_after=expected_calibration_error(z, y, temperature),
        nll_before=float(F.cross_entropy(z, y)),
        nll_after=float(F.cross_entropy(z / temperature, y)),
    )
