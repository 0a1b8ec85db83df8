"""The model card: the one description of a network as its users see it.

A `ModelCard` says what a network is (name and every build option), what it takes (input channels,
the minimum input size, the preprocessing its weights expect) and what it gives (number of outputs,
each output's name, single- or multi-label with per-class thresholds), which weights it holds and the
numbers it was evaluated with. Every network, fused network, network run by an inference engine and
int8 network exposes `.card`; every file that describes a network (a model folder's and an int8
folder's config.json, ONNX metadata, timm's pretrained_cfg, the engine cache's key) is made from
`card.to_dict()`, and `ModelCard.from_dict` reads any of them back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from inceptionnet.names import unprintable

MIN_INPUT_SIZE = 75  # the smallest input every network of the paper shrinks to 1x1 (docs/architecture.md)
LABEL_MODES = ("single", "multi")
DEFAULT_THRESHOLD = 0.5  # a multi-label class's decision threshold where none was tuned
UNKNOWN_SCORES = ("msp", "energy")  # the unknown-image scores a card may name: both computed from the logits
DEFAULT_KNOWN_KEPT = 0.95  # the share of known validation images an unknown-image threshold keeps
FIRST_CONV_MODULE = "stem.conv1a.conv"  # every network's first convolution (module path)
CLASSIFIER_MODULE = "head.fc"  # every network's classifier (module path)


class CardError(ValueError):
    """A model card (or a file's description of a network) that cannot be read; the message names the fix."""


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a network: the released checkpoints' evaluation settings."""

    input_size: int = 299
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5 maps [0, 1] to [-1, 1]
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_fraction: float = 0.875  # central 87.5% crop, TF-slim's central_fraction
    interpolation: str = "bicubic"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """The preprocessing as JSON holds it, its types restored."""
        return cls(
            input_size=int(d["input_size"]),
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
            crop_fraction=float(d["crop_fraction"]),
            interpolation=str(d["interpolation"]),
        )


@dataclass(frozen=True)
class UnknownRule:
    """When an image is of none of the classes ("unknown"): its unknown-image `score` is below `threshold`.

    `score`: "energy" (logsumexp of the logits) or "msp" (the top softmax probability), each of the logits
    divided by the card's temperature; higher means more like a known class. `threshold` was fitted on
    validation images so that `known_kept` of them score at or above it (docs/calibration.md).
    """

    score: str
    threshold: float
    known_kept: float = DEFAULT_KNOWN_KEPT

    def __post_init__(self) -> None:
        if self.score not in UNKNOWN_SCORES:
            raise CardError(f"unknown-image score must be one of {', '.join(UNKNOWN_SCORES)}, got {self.score!r}")
        if not math.isfinite(self.threshold) or not 0 < self.known_kept < 1:
            raise CardError(
                f"an unknown-image threshold must be a finite number and the share of known images kept between 0 "
                f"and 1, got {self.threshold} and {self.known_kept}; fit them with `inceptionnet calibrate`"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnknownRule:
        known_kept = float(d.get("known_kept", DEFAULT_KNOWN_KEPT))
        return cls(score=str(d["score"]), threshold=float(d["threshold"]), known_kept=known_kept)


@dataclass(frozen=True)
class ModelCard:
    """One network as its users see it; `to_dict()` / `from_dict()` is its one serialisation.

    `options` are every build option (`create_model(model_name, **options)` builds the same network);
    `input_size_fixed`: the network takes `preprocessing.input_size` only (an ONNX file exported for
    one size), else any size from `min_input_size` up. `thresholds`: one per class for multi-label
    networks (None: 0.5 for every class). `metrics`: the validation numbers of these weights. `temperature`:
    a single-label network's probabilities are softmax(logits / temperature) (None: softmax(logits), as
    before calibration); `unknown`: when an image is answered "unknown" (None: never). Both are fitted on
    validation images (`inceptionnet calibrate`, and at the end of training).
    """

    model_name: str
    num_classes: int
    options: Mapping[str, Any] = field(default_factory=dict)
    in_chans: int = 3
    class_names: tuple[str, ...] | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    min_input_size: int = MIN_INPUT_SIZE
    input_size_fixed: bool = False
    weights_name: str | None = None
    label_mode: str = "single"
    thresholds: tuple[float, ...] | None = None
    metrics: Mapping[str, Any] | None = None
    temperature: float | None = None
    unknown: UnknownRule | None = None

    def __post_init__(self) -> None:
        if self.label_mode not in LABEL_MODES:
            raise CardError(f"label_mode must be one of {', '.join(LABEL_MODES)}, got {self.label_mode!r}")
        for what, one, values in (
            ("class names", "name", self.class_names),
            ("thresholds", "threshold", self.thresholds),
        ):
            if values is not None and len(values) != self.num_classes:
                raise CardError(
                    f"{len(values)} {what} for a network with {self.num_classes} outputs; give one {one} per output"
                )
        bad = unprintable(self.class_names or ())
        if bad:
            raise CardError(
                f"class names must be text without control characters; {', '.join(bad[:5])} are not (a newline "
                "would shift every label after it in a label file): rename those classes"
            )
        if self.thresholds is not None and self.label_mode != "multi":
            raise CardError("thresholds are for multi-label networks; set label_mode='multi' or drop them")
        self._check_calibration()

    def _check_calibration(self) -> None:
        """A temperature is a positive number; both it and an unknown rule are for single-label networks."""
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise CardError(f"the temperature must be a positive number, got {self.temperature}")
        if self.label_mode == "multi" and (self.temperature is not None or self.unknown is not None):
            raise CardError(
                "temperature and unknown-image threshold are for single-label networks: a multi-label network's "
                "per-class thresholds are its calibration, and no label above them is its answer for an image of "
                "none of its classes; drop them"
            )

    def decision_thresholds(self) -> tuple[float, ...]:
        """Each class's threshold of a multi-label network (an image shows the class when its sigmoid reaches
        it): the tuned `thresholds`, else DEFAULT_THRESHOLD for every class."""
        return self.thresholds if self.thresholds is not None else (DEFAULT_THRESHOLD,) * self.num_classes

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with `changes` (dataclasses.replace, checked again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready values (lists, not tuples); `from_dict` reads it back equal."""
        return {
            "model_name": self.model_name,
            "model_options": _jsonable(dict(self.options)),
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "preprocessing": self.preprocessing.to_dict(),
            "min_input_size": self.min_input_size,
            "input_size_fixed": self.input_size_fixed,
            "weights_name": self.weights_name,
            "label_mode": self.label_mode,
            "thresholds": list(self.thresholds) if self.thresholds is not None else None,
            "metrics": _jsonable(dict(self.metrics)) if self.metrics is not None else None,
            "temperature": self.temperature,
            "unknown": self.unknown.to_dict() if self.unknown is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "model card") -> ModelCard:
        """The card `to_dict` wrote (also inside a larger config.json); a CardError names what is wrong."""
        try:
            return cls(
                model_name=str(d["model_name"]),
                num_classes=int(d["num_classes"]),
                options=_options(d.get("model_options") or {}),
                in_chans=int(d.get("in_chans", 3)),
                class_names=_names(d.get("class_names")),
                preprocessing=Preprocessing.from_dict(d["preprocessing"]),
                min_input_size=int(d.get("min_input_size", MIN_INPUT_SIZE)),
                input_size_fixed=bool(d.get("input_size_fixed", False)),
                weights_name=str(d["weights_name"]) if d.get("weights_name") is not None else None,
                label_mode=str(d.get("label_mode", "single")),
                thresholds=tuple(float(t) for t in d["thresholds"]) if d.get("thresholds") is not None else None,
                metrics=d.get("metrics"),
                temperature=float(d["temperature"]) if d.get("temperature") is not None else None,
                unknown=UnknownRule.from_dict(d["unknown"]) if d.get("unknown") is not None else None,
            )
        except CardError as err:
            raise CardError(f"{source}: {err}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CardError(f"{source}: not a readable model card ({type(err).__name__}: {err})") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def pretrained_cfg(card: ModelCard) -> dict[str, Any]:
    """timm's description of the network a card describes (its `pretrained_cfg`).

    `timm.data.resolve_model_data_config(model)` and `timm.data.create_transform(**config)` read it to give
    the network's own evaluation transform. `first_conv` and `classifier` are our module paths;
    `label_names` is present when the classes are named.
    """
    pre = card.preprocessing
    cfg: dict[str, Any] = {
        "architecture": card.model_name,
        "input_size": (card.in_chans, pre.input_size, pre.input_size),
        "min_input_size": (card.in_chans, card.min_input_size, card.min_input_size),
        "fixed_input_size": card.input_size_fixed,
        "interpolation": pre.interpolation,
        "crop_pct": pre.crop_fraction,
        "crop_mode": "center",
        "mean": tuple(pre.mean),
        "std": tuple(pre.std),
        "num_classes": card.num_classes,
        "first_conv": FIRST_CONV_MODULE,
        "classifier": CLASSIFIER_MODULE,
    }
    if card.class_names is not None:
        cfg["label_names"] = tuple(card.class_names)
    return cfg


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Build options as JSON holds them, with residual scales back as a tuple."""
    out = dict(options)
    if isinstance(out.get("scales"), list):
        out["scales"] = tuple(out["scales"])
    return out


def _names(names: Sequence[str] | None) -> tuple[str, ...] | None:
    """Class names as a tuple of distinct strings (from_dict names the source of a CardError)."""
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise CardError(f"class names must be a list of strings, got {names!r:.80}")
    if len(set(names)) != len(names):
        raise CardError("the class names are not distinct")
    return tuple(names)


def _jsonable(value: Any) -> Any:
    """Tuples as lists, recursively, so that to_dict() equals its own JSON round trip."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
