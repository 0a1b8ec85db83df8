"""The paper's two claims about residual connections, reproduced at a scale chosen by the user.

`residual` (paper Figs. 21-26): train Inception-v3 beside Inception-ResNet-v1, and Inception-v4
beside Inception-ResNet-v2 (released and paper variants), with one recipe, and compare how fast
their validation error falls, per epoch and per second of training.

`scaling` (paper section 3.3): train a residual network whose last stage has more than 1000
filters at a high learning rate with unscaled residuals (scale 1.0), with the paper's scales
(0.3 and 0.1), and with scale 1.0 after a learning-rate warm-up; watch the last feature map before
pooling for "death" (only zeros) and the loss for a standstill.

Every arm of a study trains with the same recipe; seed k gives every arm the same data order and
the same augmentations. Each run is an ordinary `train()` run in `OUT/runs/<arm>-seed<k>`; a study
that is started again skips the runs it finished and resumes an interrupted one. Results:
`epochs.csv`, `steps.csv`, `runs.csv`, `summary.csv`, `summary.json` and `<kind>.png` in `OUT`.
This module only describes a study; `run_study` trains it and `write_results` reads it back.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inceptionnet._version import __version__
from inceptionnet.data import DEMO_DATA
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.presets import preset

CIFAR10 = Path("../shared/data/cifar10")  # the development machines' CIFAR-10 (train/ and test/ ImageFolders)
STATUS = "status.json"  # written into a run folder when the run has ended: finished or diverged


@dataclass(frozen=True)
class Arm:
    """One network and setting trained with every seed of a study."""

    label: str
    model: str
    group: str  # the comparison it belongs to (one panel row of the plot)
    residual: bool
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields on top of the study's recipe

    @property
    def slug(self) -> str:
        """The label as a folder name: "Inception-ResNet-v2 (paper)" -> "inception-resnet-v2-paper"."""
        return re.sub(r"[^a-z0-9.]+", "-", self.label.lower()).strip("-")


@dataclass(frozen=True)
class Study:
    """A study: every arm trained with every seed, on one shared recipe."""

    kind: str  # "residual" or "scaling"
    recipe: TrainConfig  # shared by every arm
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]

    def run_config(self, arm: Arm, seed: int, out_dir: Path) -> TrainConfig:
        """The training configuration of one run: the recipe, the arm's overrides, the seed, its folder."""
        return dataclasses.replace(
            self.recipe, model=arm.model, seed=seed, out_dir=str(run_dir(out_dir, arm, seed)), **arm.overrides
        )


def run_dir(out_dir: Path, arm: Arm, seed: int) -> Path:
    """The folder of one run of a study written into `out_dir`."""
    return out_dir / "runs" / f"{arm.slug}-seed{seed}"


# -- the two studies ---------------------------------------------------------------------------------------

V3_PAIR = "Inception-v3 vs Inception-ResNet-v1"
V4_PAIR = "Inception-v4 vs Inception-ResNet-v2"
RESIDUAL_ARMS = (
    Arm("Inception-v3", "inception_v3", V3_PAIR, residual=False),
    Arm("Inception-ResNet-v1", "inception_resnet_v1", V3_PAIR, residual=True),
    Arm("Inception-v4", "inception_v4", V4_PAIR, residual=False),
    Arm("Inception-ResNet-v2", "inception_resnet_v2", V4_PAIR, residual=True),
    Arm("Inception-ResNet-v2 (paper)", "inception_resnet_v2_paper", V4_PAIR, residual=True),
)

SCALING_GROUP = "residual scaling"
PAPER_LR = 0.045


def scaling_arms(model: str, warmup_epochs: float) -> tuple[Arm, ...]:
    """The high-lr settings of section 3.3, and a control: scale 1.0 at the paper's learning rate."""
    return (
        Arm("scale 1.0", model, SCALING_GROUP, True, {"residual_scale": 1.0}),
        Arm("scale 0.3", model, SCALING_GROUP, True, {"residual_scale": 0.3}),
        Arm("scale 0.1", model, SCALING_GROUP, True, {"residual_scale": 0.1}),
        Arm(
            "scale 1.0 + warm-up",
            model,
            SCALING_GROUP,
            True,
            {"residual_scale": 1.0, "warmup_epochs": warmup_epochs},
        ),
        Arm("scale 1.0, paper lr 0.045", model, SCALING_GROUP, True, {"residual_scale": 1.0, "lr": PAPER_LR}),
    )


# The recipes: the paper's (TF RMSProp, eps 1.0, lr decay, label smoothing, dropout 0.2, clipping), sized
# for a CPU. Differences from the full recipe, the same for every arm: no auxiliary heads (IR-v1 and the
# paper's IR-v2 have none), and the raw weights are evaluated (no weight average, whose lag would blur
# the early epochs that the comparison is about).
_COMMON: dict[str, Any] = {
    "input_size": 75,
    "min_area": 0.25,
    "aux_weight": 0.0,
    "ema_decay": 0.0,
    "num_workers": 1,
    "progress": False,
}
RECIPES: dict[str, dict[str, Any]] = {
    # 5 networks x 3 seeds x 8 epochs of 3,000 images: 58 min on one core of a busy 2-core CPU.
    "residual": {
        **_COMMON,
        "width": 0.25,
        "epochs": 8,
        "batch_size": 64,
        "lr": 0.045,
        "lr_decay_rate": 0.8,
        "lr_decay_epochs": 1.0,
        "warmup_epochs": 0.0,
        "train_per_class": 300,
        "val_per_class": 100,
        "log_every": 5,
    },
    # 5 settings x 3 seeds x 6 epochs of 2,000 images, the last stage 1,072 wide, at 4.4 times the paper's
    # learning rate: 70 min on one core of a busy 2-core CPU.
    "scaling": {
        **_COMMON,
        "model": "inception_resnet_v2_paper",
        "width": 0.5,
        "epochs": 6,
        "batch_size": 32,
        "lr": 0.2,
        "lr_decay_rate": 0.94,
        "lr_decay_epochs": 2.0,
        "warmup_epochs": 0.0,
        "train_per_class": 200,
        "val_per_class": 50,
        "log_every": 2,
    },
}
# --quick: every code path in about a minute; its numbers say nothing about the claims.
QUICK: dict[str, Any] = {
    "width": 0.125,
    "epochs": 2,
    "batch_size": 16,
    "train_per_class": 8,
    "val_per_class": 4,
    "log_every": 1,
    "num_workers": 0,
}
WARMUP_EPOCHS = 2.0  # the scaling study's warm-up arm (linear, from 0 to the full learning rate)


def default_data() -> Path:
    """CIFAR-10 from the development machines' shared data when present, else the built-in demo subset."""
    return CIFAR10 if (CIFAR10 / "train").is_dir() else DEMO_DATA


def build_study(
    kind: str,
    *,
    seeds: int = 3,
    quick: bool = False,
    data: str | Path | None = None,
    warmup_epochs: float = WARMUP_EPOCHS,
    **overrides: Any,
) -> Study:
    """A study with its recipe; `overrides` replace recipe fields (width, epochs, lr, device, ...)."""
    if kind not in RECIPES:
        raise ValueError(f"unknown study {kind!r}; choose residual or scaling")
    if seeds < 1:
        raise ValueError("a study needs at least one seed (--seeds 1 or more)")
    if kind == "residual" and overrides.get("model") is not None:
        raise ValueError("--model applies to the scaling study; the residual study trains its fixed pairs")
    fields = dict(RECIPES[kind])
    if quick:
        fields |= QUICK
        seeds = min(seeds, 2)
    fields |= {k: v for k, v in overrides.items() if v is not None}
    fields["data"] = str(data or default_data())
    recipe = preset("demo", **fields)
    arms = RESIDUAL_ARMS if kind == "residual" else scaling_arms(recipe.model, warmup_epochs)
    return Study(kind, recipe, arms, tuple(range(seeds)))


def describe(study: Study) -> dict[str, Any]:
    """The study as JSON-ready data: kind, code version, seeds, resolved recipe and arms."""
    return {
        "kind": study.kind,
        "version": __version__,
        "seeds": list(study.seeds),
        "recipe": study.recipe.to_dict(),
        "arms": [dataclasses.asdict(a) for a in study.arms],
    }
