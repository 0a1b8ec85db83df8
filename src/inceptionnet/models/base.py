"""What every network of the package shares: input checks, heads, feature taps, initialisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inceptionnet.card import MIN_INPUT_SIZE, ModelCard, Preprocessing, UnknownRule, pretrained_cfg
from inceptionnet.models.layers import AuxHead, BlockStage, ClassifierHead, check_input_size


@dataclass(frozen=True)
class FeatureInfo:
    """One named intermediate feature map: where it is taken and what it holds.

    `node` is the torch.fx node (module path or operation inside a module) whose output is the map.
    """

    name: str
    node: str
    channels: int
    stride: int


# What a network constructor's locals() hold besides its build options.
_NOT_OPTIONS = ("self", "__class__", "spec", "preprocessing")


class InceptionNetwork(nn.Module):
    """Base of the five networks.

    Subclasses build `stem` ... `head` in `__init__` (reading like their overall figure) and split
    their body at the 17x17 grid, which feeds the auxiliary head:

    - `forward_early(x)`: stem, 35x35 and 17x17 stages;
    - `forward_late(x)`: reduction to 8x8 and the 8x8 stage (the last feature map).
    """

    min_input_size: int = MIN_INPUT_SIZE
    model_name: str = "inception"
    head: ClassifierHead
    aux: AuxHead | None
    preprocessing: Preprocessing  # how images are prepared for it: its weights' settings
    build_options: dict[str, Any]  # every option it was built with: create_model(model_name, **build_options)
    weights_name: str | None  # the weights loaded into it (a tag or a file); None when randomly initialised
    class_names: tuple[str, ...] | None  # each output's name (ImageNet synsets, a run's class folders); None: unknown
    label_mode: str = "single"  # "single" (softmax over the classes) or "multi" (a sigmoid per class)
    thresholds: tuple[float, ...] | None = None  # multi-label: each class's decision threshold
    metrics: dict[str, Any] | None = None  # the validation numbers of the weights loaded, where recorded
    temperature: float | None = None  # single-label: probabilities are softmax(logits / temperature) when set
    unknown: UnknownRule | None = None  # single-label: when an image is answered "unknown"

    def __init__(self, arguments: dict[str, Any]) -> None:
        """Records the build options and the preprocessing from `arguments`: the subclass constructor's own
        arguments (`locals()` on its first line), so that `build_options` lists every option it takes, in
        its signature's order, and cannot miss one. `preprocessing` is the network's, not an option."""
        super().__init__()
        options = {k: v for k, v in arguments.items() if k not in _NOT_OPTIONS}
        self.in_chans = options["in_chans"]
        self.build_options = options
        preprocessing = arguments["preprocessing"]
        self.preprocessing = preprocessing if preprocessing is not None else Preprocessing()
        self.weights_name = None
        self.class_names = None
        self.feature_info: list[FeatureInfo] = []

    # -- the body, split at the auxiliary tap ---------------------------------------------------
    def forward_early(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_late(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        """Channels of the last feature map (the classifier's input)."""
        return self.head.in_channels

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's description of the network and its weights (`inceptionnet.card.pretrained_cfg` of its card),
        computed each time (never stale), so that `timm.data.resolve_model_data_config(model)` and
        `timm.data.create_transform(**config)` give this network's own evaluation transform."""
        return pretrained_cfg(self.card)

    @property
    def card(self) -> ModelCard:
        """The network's description (inceptionnet.card), made from its attributes each time (never stale)."""
        return ModelCard(
            model_name=self.model_name,
            num_classes=self.num_classes,
            options=dict(self.build_options),
            in_chans=self.in_chans,
            class_names=self.class_names,
            preprocessing=self.preprocessing,
            min_input_size=self.min_input_size,
            weights_name=self.weights_name,
            label_mode=self.label_mode,
            thresholds=self.thresholds,
            metrics=self.metrics,
            temperature=self.temperature,
            unknown=self.unknown,
        )

    def apply_card(self, card: ModelCard) -> None:
        """Take what `card` says about the network's weights and use: its class names, preprocessing, weights
        name, label mode, thresholds, metrics, temperature and unknown-image rule (the attributes `card` is made
        from, but for the build).

        The build is the network's own (its name, outputs and input channels must be the card's: a card of
        another network is a ValueError); `create_model(card=...)` builds the network a card describes.
        """
        built = (self.model_name, self.num_classes, self.in_chans)
        described = (card.model_name, card.num_classes, card.in_chans)
        if built != described:
            raise ValueError(
                f"the card describes a {card.model_name} with {card.num_classes} outputs and {card.in_chans} input "
                f"channels, this is a {self.model_name} with {self.num_classes} and {self.in_chans}; "
                "build the network the card describes with create_model(card=card)"
            )
        self.class_names = card.class_names
        self.preprocessing = card.preprocessing
        self.weights_name = card.weights_name
        self.label_mode = card.label_mode
        self.thresholds = card.thresholds
        self.metrics = dict(card.metrics) if card.metrics is not None else None
        self.temperature = card.temperature
        self.unknown = card.unknown

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Raise a ValueError for inputs below the minimum size or with the wrong channel count."""
        return check_input_size(x, self.min_input_size, self.in_chans, self.model_name)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling (8x8 at a 299 input)."""
        return self.forward_late(self.forward_early(self.check_input(x)))

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool -> dropout -> FC; with `pre_logits` the pooled features only."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor, *, return_aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits. With `return_aux=True` (training only) also the auxiliary head's logits."""
        if return_aux and self.aux is None:
            raise ValueError(f"{self.model_name} has no auxiliary head; build it with aux_logits=True")
        grid17 = self.forward_early(self.check_input(x))
        logits = self.forward_head(self.forward_late(grid17))
        if not return_aux:
            return logits
        return logits, self.aux(grid17)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (and the auxiliary classifier) with freshly initialised ones.

        What described the old classifier goes with it: class names, thresholds, metrics and calibration.
        """
        drop_rate = self.head.drop.p
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate=drop_rate)
        if self.aux is not None:
            self.aux.fc = nn.Linear(self.aux.fc.in_features, num_classes)
            init_weights(self.aux.fc)
        init_weights(self.head)
        self.build_options["num_classes"] = num_classes
        self.class_names = None
        self.thresholds = None
        self.metrics = None
        self.temperature = None
        self.unknown = None

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing of every block stage while training (see `BlockStage`); same results."""
        for stage in self.modules():
            if isinstance(stage, BlockStage):
                stage.grad_checkpointing = enable

    @property
    def grad_checkpointing(self) -> bool:
        return any(s.grad_checkpointing for s in self.modules() if isinstance(s, BlockStage))


def init_weights(module: nn.Module) -> None:
    """He-normal (fan-in) convolutions, as TF-slim's Inception-v4; N(0, 0.01) classifiers; zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
