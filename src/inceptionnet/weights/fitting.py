"""Fitting a state dict in our layout onto a network.

`load_state_dict_into` adapts what users expect to be adapted (classifier size, input channels,
TF's background class) and refuses everything else with a message naming the keys. Its
`LoadReport` says what was not loaded, so that a caller can refuse a classifier that stayed random.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from inceptionnet.models import InceptionNetwork
from inceptionnet.weights.files import FIRST_CONV
from inceptionnet.weights.tags import WeightsError

log = logging.getLogger(__name__)

CLASSIFIERS = ("head.fc", "aux.fc")


# -- fitting a state dict to a network ------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What `load_state_dict_into` did beyond a plain copy (all of it is also logged)."""

    reinitialised: list[str] = field(default_factory=list)  # our keys left at their fresh initialisation
    dropped: list[str] = field(default_factory=list)  # checkpoint keys not used
    adapted: list[str] = field(default_factory=list)  # keys changed to fit (first conv, background class)


def adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv weights for `in_chans` input channels from weights trained on weight.shape[1] channels.

    One channel: the sum over the trained channels (a grey image then gives the response of the
    colour image with equal channels). More: the trained channels repeated cyclically and scaled by
    trained/new, so the response to a constant image keeps its size.
    """
    trained = weight.shape[1]
    if in_chans == trained:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / trained)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (trained / in_chans)


def list_keys(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}{f', ... ({len(keys)} in all)' if len(keys) > n else f' ({len(keys)})'}"


def load_state_dict_into(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> LoadReport:
    """Copy a state dict in our layout into `model`, adapting what users expect to be adapted.

    - classifier (and auxiliary classifier) of another size: left freshly initialised, except a
      1001-way TF classifier (index 0 = background) for a 1000-class model, whose row 0 is dropped;
    - first convolution for another number of input channels: `adapt_first_conv`;
    - auxiliary head absent from the file: left initialised; present in the file, absent from the
      model: ignored.
    Anything else that does not match (missing, unexpected or mis-shaped keys) raises WeightsError
    naming a few of the keys and their count.
    """
    own = model.state_dict()
    state, report = _adapted(dict(state), own)
    # Older published files carry no BN step counters; they only matter to momentum-free BN training.
    for k in own:
        if k.endswith(".num_batches_tracked") and k not in state:
            state[k] = own[k]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    _refuse_misfits(model, state, own, source=source, missing=missing, unexpected=unexpected, mismatched=mismatched)
    load = {k: v for k, v in state.items() if k in own and k not in mismatched}
    report.reinitialised = sorted(set(missing) | set(mismatched))
    report.dropped = sorted(set(unexpected) | set(mismatched))
    model.load_state_dict({**own, **load}, strict=True)
    for line in report.adapted:
        log.info("%s: adapted %s", source, line)
    if report.reinitialised:
        log.info("%s: not loaded, freshly initialised: %s", source, list_keys(report.reinitialised))
    if report.dropped:
        log.info("%s: not used from the file: %s", source, list_keys(report.dropped))
    return report


def _adapted(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> tuple[dict, LoadReport]:
    """The state with TF's background class dropped and the first convolution fitted to the input channels."""
    report = LoadReport()
    for name in CLASSIFIERS:
        w, b = f"{name}.weight", f"{name}.bias"
        if w in state and w in own and state[w].shape[0] == 1001 and own[w].shape[0] == 1000:
            state[w], state[b] = state[w][1:], state[b][1:]
            report.adapted.append(f"{name} (1001 -> 1000 classes: background row 0 dropped)")
    first, target = state.get(FIRST_CONV), own.get(FIRST_CONV)
    fits_but_channels = first is not None and target is not None and first.shape[0] == target.shape[0]
    if fits_but_channels and first.shape[1] != target.shape[1]:
        state[FIRST_CONV] = adapt_first_conv(first, target.shape[1])
        report.adapted.append(f"{FIRST_CONV} ({first.shape[1]} -> {target.shape[1]} input channels)")
    return state, report


def _refuse_misfits(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    *,
    source: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> None:
    """Raise WeightsError for keys that do not fit, other than the classifiers and the auxiliary head."""
    optional = ("head.fc.", "aux.")  # parts that may legitimately stay initialised or be ignored
    bad_missing = [k for k in missing if not k.startswith(optional)]
    bad_unexpected = [k for k in unexpected if not k.startswith(optional)]
    bad_shape = [k for k in mismatched if not k.startswith(("head.fc.", "aux.fc."))]
    if not (bad_missing or bad_unexpected or bad_shape):
        return
    name = model.model_name if isinstance(model, InceptionNetwork) else type(model).__name__  # any module loads
    lines = [f"{source} does not fit {name}:"]
    if bad_shape:
        k = bad_shape[0]
        example = f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        lines.append(f"  shape mismatch: {list_keys(bad_shape)}; e.g. {example}")
    if bad_missing:
        lines.append(f"  missing from the file: {list_keys(bad_missing)}")
    if bad_unexpected:
        lines.append(f"  unexpected in the file: {list_keys(bad_unexpected)}")
    lines.append(
        "  Check that the file was saved from the same network with the same width and options "
        "(num_classes and in_chans may differ)."
    )
    raise WeightsError("\n".join(lines))
