"""Training configuration: one frozen dataclass, and presets that are named values of it.

`PRESETS["paper"]` is the recipe of the paper (section 4) completed with the authors' released
TF-slim training script where the paper is silent (paper-spec section 10); `PRESETS["demo"]`
trains a small Inception-ResNet-v1 on the built-in CIFAR-10 subset in minutes on a CPU;
`PRESETS["finetune"]` starts from published ImageNet weights with a new classifier for a folder of
a few thousand images (docs/finetuning.md).
Every field can be overridden (`dataclasses.replace`, or `--field-name` on the command line).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Optimizer = Literal["rmsprop_tf", "sgd"]
LrSchedule = Literal["staircase", "cosine"]
Precision = Literal["fp32", "bf16", "fp16"]
ColorDistort = Literal["none", "fast", "full"]


def _help(text: str) -> dict[str, str]:
    """A field's help text, shown by `inceptionnet train --help`."""
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Stored, resolved, in every checkpoint and metrics line."""

    # -- data ---------------------------------------------------------------------------------------------
    data: str | None = field(
        default=None,
        metadata=_help("ImageFolder root holding train/<class>/* and val/<class>/*; default: the built-in demo data"),
    )
    out_dir: str | None = field(
        default=None,
        metadata=_help("output folder; default runs/<model>-<UTC time>, or the resumed checkpoint's folder"),
    )
    input_size: int | None = field(
        default=None, metadata=_help("square training and evaluation input size in pixels; default: the model's (299)")
    )
    min_area: float = field(
        default=0.05,
        metadata=_help("smallest random-crop area, as a fraction of the image (TF-slim 0.05; 0.08 is torchvision's)"),
    )
    color_distort: ColorDistort = field(
        default="fast",
        metadata=_help("colour distortion: fast = brightness and saturation (TF-slim), full = also hue and contrast"),
    )
    train_interpolation: str = field(
        default="bilinear",
        metadata=_help("resize of the training crops (TF-slim: bilinear); evaluation uses the model's"),
    )
    train_per_class: int = field(
        default=0, metadata=_help("train on the first N images of each class only (in file-name order); 0 = all")
    )
    val_per_class: int = field(default=0, metadata=_help("evaluate on the first N images of each class only; 0 = all"))
    num_workers: int = field(default=4, metadata=_help("DataLoader worker processes per training process"))

    # -- model --------------------------------------------------------------------------------------------
    model: str = field(default="inception_resnet_v2", metadata=_help("network to train"))
    weights: str | None = field(
        default=None, metadata=_help("start from these weights with a new classifier: tag (tf_in1k), file or run")
    )
    freeze: int = field(
        default=0, metadata=_help("freeze the first N of stem, blocks_a, reduction_a, ..., blocks_c; 0 = none")
    )
    pretrained_lr_scale: float = field(
        default=1.0, metadata=_help("lr multiplier of the pretrained layers; the new classifiers get the full lr")
    )
    width: float | None = field(
        default=None, metadata=_help("channel-width multiplier; default: the weights' width, else 1.0 (the paper)")
    )
    drop_rate: float = field(
        default=0.2, metadata=_help("dropout rate before the classifier (0.2 = the paper's keep probability 0.8)")
    )
    aux_weight: float = field(
        default=0.4,
        metadata=_help(
            "weight of the auxiliary-head loss (TF-slim); used only by networks that have the head; 0 = off"
        ),
    )
    residual_scale: float | None = field(
        default=None,
        metadata=_help(
            "scale of every residual branch of an Inception-ResNet (1.0 = unscaled; paper section 3.3: 0.1-0.3); "
            "default: the network's own"
        ),
    )
    sync_bn: bool = field(
        default=False, metadata=_help("synchronise BatchNorm statistics across GPUs (multi-GPU CUDA runs only)")
    )

    # -- optimisation -------------------------------------------------------------------------------------
    epochs: int = field(default=100, metadata=_help("epochs to train (not stated by the paper; Inception-v3 used 100)"))
    batch_size: int = field(
        default=32,
        metadata=_help("images per process (GPU) and step; the global batch is this times the number of processes"),
    )
    optimizer: Optimizer = field(
        default="rmsprop_tf",
        metadata=_help("rmsprop_tf = TensorFlow's RMSProp (the paper's best models); sgd = momentum SGD"),
    )
    lr: float = field(default=0.045, metadata=_help("initial learning rate"))
    lr_schedule: LrSchedule = field(
        default="staircase", metadata=_help("staircase (the paper's decay) or cosine (from --lr to 0 over --epochs)")
    )
    lr_decay_rate: float = field(
        default=0.94, metadata=_help("multiply the learning rate by this every --lr-decay-epochs")
    )
    lr_decay_epochs: float = field(default=2.0, metadata=_help("epochs between learning-rate decays, staircase"))
    warmup_epochs: float = field(
        default=0.0, metadata=_help("linear learning-rate warm-up over this many epochs (not in the paper)")
    )
    momentum: float = field(default=0.9, metadata=_help("momentum of RMSProp (TF-slim) or SGD"))
    rmsprop_decay: float = field(default=0.9, metadata=_help("RMSProp decay of the squared-gradient average"))
    rmsprop_eps: float = field(
        default=1.0, metadata=_help("RMSProp epsilon, added inside the square root as TensorFlow does")
    )
    weight_decay: float = field(
        default=4e-5, metadata=_help("L2 weight decay on conv and FC weights, added to the gradient (TF-slim)")
    )
    label_smoothing: float = field(
        default=0.1, metadata=_help("label smoothing of the cross-entropy (0.1 in Inception-v3)")
    )
    clip_grad_norm: float = field(default=2.0, metadata=_help("clip the global gradient norm to this; 0 = off"))
    ema_decay: float = field(
        default=0.9999,
        metadata=_help("decay of the running average of the weights that is evaluated and saved; 0 = off"),
    )

    # -- execution ----------------------------------------------------------------------------------------
    precision: Precision = field(
        default="fp32", metadata=_help("autocast precision: fp32, bf16, or fp16 (with a gradient scaler)")
    )
    channels_last: bool = field(
        default=False, metadata=_help("channels-last memory format (faster convolutions on recent GPUs)")
    )
    compile: bool = field(default=False, metadata=_help("compile the training network with torch.compile"))
    grad_checkpointing: bool = field(
        default=False,
        metadata=_help(
            "recompute each Inception block's activations in the backward pass to save memory; same results"
        ),
    )
    seed: int = field(
        default=0, metadata=_help("seed of the initial weights, the data order, the augmentations and dropout")
    )
    device: str = field(
        default="auto", metadata=_help("auto (each process's GPU if CUDA is available, else the CPU), cuda or cpu")
    )
    max_steps: int | None = field(
        default=None,
        metadata=_help("stop with a checkpoint once the run reaches this many steps in total (not kept by --resume)"),
    )
    checkpoint_every: int = field(
        default=0, metadata=_help("also write the last checkpoint every this many steps; 0 = at epoch ends only")
    )
    eval_every: int = field(default=1, metadata=_help("evaluate every this many epochs (and after the last)"))
    log_every: int = field(
        default=0,
        metadata=_help(
            "every this many steps, append a step record to metrics.jsonl: loss, lr, gradient norm and the share "
            "of zero activations in the last feature map; 0 = off"
        ),
    )
    progress: bool = field(default=True, metadata=_help("show a progress bar per epoch"))

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 < self.min_area <= 1, "min_area must be in (0, 1]"),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1); 0 disables the weight average"),
            (0 <= self.drop_rate < 1, "drop_rate must be in [0, 1)"),
            (self.width is None or self.width > 0, "width must be > 0"),
            (self.freeze >= 0, "freeze must be >= 0 (the number of leading stages to freeze; 0 = none)"),
            (self.pretrained_lr_scale > 0, "pretrained_lr_scale must be > 0 (use --freeze to stop updates)"),
            (self.lr_schedule in ("staircase", "cosine"), f"lr_schedule {self.lr_schedule!r}: staircase or cosine"),
            (self.residual_scale is None or self.residual_scale > 0, "residual_scale must be > 0"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.log_every >= 0, "log_every must be >= 0"),
            (self.train_per_class >= 0 and self.val_per_class >= 0, "train/val_per_class must be >= 0 (0 = all)"),
            (self.input_size is None or self.input_size >= 75, "input_size must be >= 75 (the networks' minimum)"),
            (self.optimizer in ("rmsprop_tf", "sgd"), f"optimizer {self.optimizer!r}: choose rmsprop_tf or sgd"),
            (self.precision in ("fp32", "bf16", "fp16"), f"precision {self.precision!r}: choose fp32, bf16 or fp16"),
            (self.color_distort in ("none", "fast", "full"), "color_distort: choose none, fast or full"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid training config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_options(self, *, num_classes: int | None) -> dict[str, Any]:
        """The `create_model` options this configuration sets (without the auxiliary head).

        Unset options (width, residual scales, and `num_classes=None`) are left out: they are the
        weights' own when fine-tuning, and the network's defaults otherwise.
        """
        options: dict[str, Any] = {"drop_rate": self.drop_rate}
        if num_classes is not None:
            options["num_classes"] = num_classes
        if self.width is not None:
            options["width"] = self.width
        if self.residual_scale is not None:
            if not self.model.startswith("inception_resnet"):
                raise ValueError(f"--residual-scale applies to the Inception-ResNet networks only, not {self.model}")
            options["scales"] = (self.residual_scale,) * 3
        return options

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild a config stored in a checkpoint; fields unknown to this version are rejected by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown training config fields {unknown}; was the checkpoint written by a newer version?"
            )
        return cls(**values)


PRESETS: dict[str, TrainConfig] = {
    # The paper's recipe (section 4 + TF-slim), for ImageNet on GPUs.
    # Execution settings (bf16, channels-last) do not change the recipe; pass --precision fp32 on GPUs without bf16.
    "paper": TrainConfig(precision="bf16", channels_last=True, num_workers=8),
    # Built-in demo: the CIFAR-10 subset upscaled to 75 px, Inception-ResNet-v1 at 1/4 width, minutes on a CPU.
    # The paper's recipe with a schedule for a short run: a faster lr decay, a short weight average, and
    # larger crops of the tiny images.
    "demo": TrainConfig(
        model="inception_resnet_v1",
        width=0.25,
        input_size=75,
        min_area=0.25,
        epochs=10,
        batch_size=64,
        lr=0.045,
        lr_decay_rate=0.8,
        lr_decay_epochs=1.0,
        warmup_epochs=0.5,
        ema_decay=0.99,
        num_workers=1,
        channels_last=True,  # exact, and the fastest CPU training step (docs/performance.md, "Training step")
    ),
    # Published ImageNet weights, a few thousand images of your own, one GPU or a CPU: a new classifier, every layer
    # at lr 0.01 (momentum SGD, 1 warm-up epoch, cosine decay). docs/finetuning.md gives each number's reason.
    "finetune": TrainConfig(
        model="inception_resnet_v2",
        weights="tf_in1k",
        epochs=15,
        optimizer="sgd",
        lr=0.01,
        lr_schedule="cosine",
        warmup_epochs=1.0,
        aux_weight=0.0,
        ema_decay=0.999,
    ),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A preset with some fields replaced: `preset("paper", data="/imagenet", epochs=160)`."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown training config fields {unknown}; known fields: {', '.join(sorted(known))}")
    return dataclasses.replace(PRESETS[name], **overrides)


def config_changes(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (old value, new value)} for every field that differs."""
    return {k: (v, getattr(new, k)) for k, v in old.to_dict().items() if getattr(new, k) != v}


def resolve_config(
    *, preset_name: str | None, overrides: dict[str, Any], stored: dict[str, Any] | None = None
) -> TrainConfig:
    """The configuration a command line asks for.

    A new run starts from `preset_name` (default: "finetune" with `weights`, else "paper" with `data`,
    else "demo"). A resumed run starts from the configuration `stored` in its checkpoint, minus `max_steps` (a
    limit on one invocation); in both cases the explicit `overrides` win.
    """
    if stored is not None:
        if preset_name is not None:
            raise ValueError(
                "--preset cannot be combined with --resume: a resumed run keeps its checkpoint's configuration"
            )
        base = dataclasses.replace(TrainConfig.from_dict(stored), max_steps=None)
        return dataclasses.replace(base, **overrides)
    name = preset_name or ("finetune" if overrides.get("weights") else "paper" if overrides.get("data") else "demo")
    return preset(name, **overrides)
