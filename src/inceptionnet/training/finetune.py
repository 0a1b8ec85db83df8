"""Fine-tuning: a network started from weights with a new classifier, and frozen stages (docs/finetuning.md).

- `network_from_weights`: `create_model` with the weights of `--weights` (a tag, a file, a run),
  then a fresh classifier (and auxiliary classifier) sized to the training folder's classes.
  The build options come from the weights; only those the configuration sets are passed.
- `adopt_network`: a network built by the caller (`train(cfg, model=net)`), checked against the
  configuration; a fresh classifier only where its size does not fit the classes.
- `freeze`: the first N stages of the body, in forward order, stop training: no gradients, and
  their BatchNorm layers stay in eval mode, so their statistics stay those of the weights.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from torch import nn

from inceptionnet.factory import create_model
from inceptionnet.models import InceptionNetwork, get_entry
from inceptionnet.training.config import TrainConfig
from inceptionnet.weights import WeightsError

# The body of every network, in forward order; conv_7b exists in the released Inception-ResNet-v2 only.
STAGES = ("stem", "blocks_a", "reduction_a", "blocks_b", "reduction_b", "blocks_c", "conv_7b")


def model_options(cfg: TrainConfig, *, num_classes: int | None) -> dict[str, Any]:
    """The `create_model` options `cfg` sets (without the auxiliary head).

    Unset options (width, residual scales, and `num_classes=None`) are left out: they are the
    weights' own when fine-tuning, and the network's defaults otherwise.
    """
    options: dict[str, Any] = {"drop_rate": cfg.drop_rate}
    if num_classes is not None:
        options["num_classes"] = num_classes
    if cfg.width is not None:
        options["width"] = cfg.width
    if cfg.residual_scale is not None:
        if not cfg.model.startswith("inception_resnet"):
            raise ValueError(f"--residual-scale applies to the Inception-ResNet networks only, not {cfg.model}")
        options["scales"] = (cfg.residual_scale,) * 3
    return options


def create_network(name: str, *, weights: str | None = None, aux: bool, **options: object) -> InceptionNetwork:
    """`create_model`, with the auxiliary head when `aux` asks for it and the network has one (inception_resnet_v1
    and the paper's Inception-ResNet-v2 have none)."""
    return create_model(name, weights=weights, aux_logits=aux and get_entry(name).has_aux, **options)


def network_from_weights(cfg: TrainConfig, *, num_classes: int, aux: bool) -> tuple[InceptionNetwork, str]:
    """`cfg.model` with the weights `cfg.weights` and a new classifier for `num_classes`; the line that says so.

    The weights bring their build options (width, residual scales, ...) and preprocessing; only the
    options the configuration sets are passed. `aux` asks for the auxiliary head. A network or
    width that does not fit the weights is a WeightsError (a ValueError) naming both.
    """
    options = {**model_options(cfg, num_classes=None), "in_chans": 3}  # the images are RGB
    try:
        model = create_network(cfg.model, weights=cfg.weights, aux=aux, **options)
    except WeightsError as err:
        hint = f"\n(--width {cfg.width} was given: leave it unset to take the weights' width)" if cfg.width else ""
        raise WeightsError(f"cannot fine-tune {cfg.model} from {cfg.weights}: {err}{hint}") from None
    had = model.num_classes
    model.reset_classifier(num_classes)
    heads = "classifier and auxiliary classifier" if model.aux is not None else "classifier"
    note = f"fine-tuning {cfg.model} from {model.weights_name}: new {heads} for {num_classes} classes"
    return model, f"{note} (the weights had {had})"


def adopt_network(model: nn.Module, cfg: TrainConfig, *, num_classes: int) -> tuple[InceptionNetwork, str | None]:
    """The caller's network, checked against `cfg`, with a new classifier if its size does not fit.

    It trains as built (its width, dropout, residual scales, auxiliary head and weights); the
    line says so when the classifier is new (None when it is kept).
    """
    if not isinstance(model, InceptionNetwork):
        raise ValueError(
            "train(cfg, model=...) takes a network of this package (inceptionnet.create_model), "
            f"not a {type(model).__name__}"
        )
    if cfg.weights is not None:
        raise ValueError(
            "pass the starting weights either in the config (weights=...) or loaded into the model, not both"
        )
    if model.model_name != cfg.model:
        raise ValueError(
            f"the network passed in is {model.model_name} but the config trains {cfg.model}; "
            f"set model={model.model_name!r} in the config (checkpoints record it)"
        )
    if model.aux is not None and cfg.aux_weight == 0:
        raise ValueError(
            "the network passed in has an auxiliary head but aux_weight is 0, so the head would get no gradient; "
            "set aux_weight > 0 or build the network with aux_logits=False"
        )
    had = model.num_classes
    if had == num_classes:
        return model, None
    model.reset_classifier(num_classes)
    heads = "classifier and auxiliary classifier" if model.aux is not None else "classifier"
    return model, f"training the {cfg.model} passed in: new {heads} for {num_classes} classes (it had {had})"


def stages(model: InceptionNetwork) -> list[str]:
    """The names of the network's body stages, in forward order."""
    children = dict(model.named_children())
    return [name for name in STAGES if name in children]


def freeze(model: InceptionNetwork, count: int) -> list[str]:
    """Freeze the first `count` stages of `model` (in place); their names.

    A frozen stage's parameters get requires_grad=False (the optimiser leaves them out), and the
    stage stays in eval mode whatever `model.train()` says: its BatchNorm layers normalise with
    the statistics of the weights and never update them.
    """
    names = stages(model)
    if count > len(names):
        raise ValueError(
            f"freeze {count}: {model.model_name} has {len(names)} stages ({', '.join(names)}); choose 0-{len(names)}"
        )
    for name in names[:count]:
        stage = model.get_submodule(name)
        stage.requires_grad_(False)
        stage.train = MethodType(_stay_in_eval, stage)  # model.train() calls each child's train()
        stage.eval()
    return names[:count]


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    """`train()` of a frozen stage: eval mode, for it and everything in it, whatever `mode` asks."""
    return nn.Module.train(self, False)


def frozen_note(model: InceptionNetwork, names: list[str]) -> str:
    """The console line that names the frozen stages and counts their parameters."""
    count = sum(p.numel() for name in names for p in model.get_submodule(name).parameters())
    return f"frozen: {', '.join(names)} ({count:,} parameters, BatchNorm statistics kept)"
