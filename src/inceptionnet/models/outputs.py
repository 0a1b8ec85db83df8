"""What a network's logits mean, as its card says: probabilities, and how far an image is from every class.

One place for the arithmetic that predict, serve, eval and the exported graphs share, so that they agree:

- probabilities: a sigmoid per class for a multi-label network; otherwise softmax(logits / temperature), the
  card's temperature (fitted on validation images by `inceptionnet calibrate`), or softmax(logits) without one,
  exactly as before calibration existed;
- unknown-image scores (`card.UNKNOWN_SCORES`), higher for images more like a known class: "msp", the top
  probability, and "energy", logsumexp of the (temperature-scaled) logits, the negative free energy of Liu et
  al., "Energy-based Out-of-distribution Detection" (NeurIPS 2020). An image is "unknown" when its score is
  below the card's threshold (`card.unknown`).

The fitting of the temperature and of the threshold, and the measurements, are evaluation's
(evaluation/calibration.py, evaluation/unknown.py).
"""

from __future__ import annotations

import torch

from inceptionnet.card import UNKNOWN_SCORES, ModelCard


def scaled_logits(logits: torch.Tensor, temperature: float | None) -> torch.Tensor:
    """`logits` divided by `temperature`; the very tensor when there is none (no arithmetic, no rounding)."""
    return logits if temperature is None else logits / temperature


def probabilities(logits: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """The probabilities of logits (N, C): a sigmoid per class (multi-label), else the calibrated softmax."""
    if card.label_mode == "multi":
        return logits.sigmoid()
    return scaled_logits(logits, card.temperature).softmax(dim=-1)


def unknown_scores(logits: torch.Tensor, score: str, *, temperature: float | None = None) -> torch.Tensor:
    """One score per row of logits (N, C), higher where the image is more like one of the classes."""
    z = scaled_logits(logits.float(), temperature)
    if score == "msp":
        return z.softmax(dim=-1).amax(dim=-1)
    if score == "energy":
        return z.logsumexp(dim=-1)
    raise ValueError(f"unknown-image score must be one of {', '.join(UNKNOWN_SCORES)}, got {score!r}")


def card_unknown_scores(logits: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """The scores `card.unknown` thresholds; a ValueError naming the fix when the card has no such rule."""
    if card.unknown is None:
        raise ValueError(
            f"the card of {card.model_name} has no unknown-image threshold; fit one on validation images with "
            "`inceptionnet calibrate RUN --data VAL` (a run folder or a model folder)"
        )
    return unknown_scores(logits, card.unknown.score, temperature=card.temperature)
