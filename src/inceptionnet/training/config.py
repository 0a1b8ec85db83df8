"""Training configuration: one frozen dataclass whose every field says what it sets and what a continued
run may do with it.

Every field can be overridden (`dataclasses.replace`, or `--field-name` on the command line); the
named starting points ("paper", "demo", "finetune") are in presets.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from inceptionnet.training.knobs import (  # the choices of the Literal fields, checked by choice_errors
    Augment,
    ClassWeights,
    ColorDistort,
    LabelMode,
    LrSchedule,
    Optimizer,
    Precision,
    Resume,
    SamplerKind,
    choice_errors,
    knob,
)
from inceptionnet.weights.runfolder import METRICS


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Stored, resolved, in every checkpoint and metrics line."""

    # -- data ---------------------------------------------------------------------------------------------
    data: str | None = knob(
        None,
        "data root holding the train/ and val/ splits, each an image folder (<class>/<images>) or a folder of "
        "images with a metadata.csv or metadata.jsonl, or a Hugging Face dataset: hf:ORG/NAME, a save_to_disk "
        "folder or parquet files (docs/training.md, Data sources); default: the built-in demo data",
        resume="resume_only",
    )
    image_column: str | None = knob(
        None, "image column of a Hugging Face dataset; default: its one column of type Image", resume="kept"
    )
    label_column: str | None = knob(
        None,
        "label column of a Hugging Face dataset; default: its one ClassLabel column, else label",
        resume="kept",
    )
    label_mode: LabelMode = knob(
        "auto",
        "auto | single | multi: one class per image (softmax, cross-entropy) or several (a sigmoid per class, "
        "binary cross-entropy); auto: multi when the training split has several labels per image",
        resume="kept",
    )
    out_dir: str | None = knob(
        None,
        "output folder; default runs/<model>-<UTC time>, or the resumed checkpoint's folder",
        resume="may_change",
    )
    input_size: int | None = knob(
        None, "square training and evaluation input size in pixels; default: the model's (299)", resume="resume_only"
    )
    min_area: float = knob(
        0.05,
        "smallest random-crop area, as a fraction of the image (TF-slim 0.05; 0.08 is torchvision's)",
        resume="resume_only",
    )
    color_distort: ColorDistort = knob(
        "fast",
        "colour distortion: fast = brightness and saturation (TF-slim), full = also hue and contrast",
        resume="resume_only",
    )
    augment: Augment = knob(
        "inception",
        "per-image augmentation after the random crop and flip: inception = the paper's colour distortion "
        "(--color-distort); randaugment, trivialaugment or autoaugment (its ImageNet policy) = torchvision's",
        resume="resume_only",
    )
    randaugment_magnitude: int = knob(
        9, "strength of each RandAugment operation, 0-30 (9: timm's and RandAugment's ImageNet)", resume="resume_only"
    )
    randaugment_ops: int = knob(2, "RandAugment operations applied to each image", resume="resume_only")
    random_erasing: float = knob(
        0.0, "probability of erasing one random box of each normalised training image; 0 = off", resume="resume_only"
    )
    mixup: float = knob(
        0.0,
        "mixup alpha: blend each batch with itself rolled by one, labels likewise; 0 = off; with --cutmix, one "
        "of the two per batch, at even odds",
        resume="resume_only",
    )
    cutmix: float = knob(
        0.0, "cutmix alpha: paste a box of the batch rolled by one, labels by area; 0 = off", resume="resume_only"
    )
    train_interpolation: str = knob(
        "bilinear",
        "resize of the training crops (TF-slim: bilinear); evaluation uses the model's",
        resume="resume_only",
    )
    train_per_class: int = knob(
        0, "train on the first N images of each class only (in file-name order); 0 = all", resume="resume_only"
    )
    val_per_class: int = knob(0, "evaluate on the first N images of each class only; 0 = all", resume="resume_only")
    sampler: SamplerKind = knob(
        "shuffle",
        "order of the training images: shuffle = each image once per epoch; balanced = each draw a class "
        "uniformly, then one of its images (with replacement; not with tar shards)",
        resume="resume_only",
    )
    class_weights: ClassWeights = knob(
        "none",
        "loss weights: balanced = n_images / (n_classes * images of the class) from the training split",
        resume="resume_only",
    )
    num_workers: int = knob(4, "DataLoader worker processes per training process", resume="may_change")

    # -- model --------------------------------------------------------------------------------------------
    model: str = knob("inception_resnet_v2", "network to train", resume="kept")
    weights: str | None = knob(
        None, "start from these weights with a new classifier: tag (tf_in1k), file or run", resume="resume_only"
    )
    freeze: int = knob(0, "freeze the first N of stem, blocks_a, reduction_a, ..., blocks_c; 0 = none", resume="kept")
    pretrained_lr_scale: float = knob(
        1.0, "lr multiplier of the pretrained layers; the new classifiers get the full lr", resume="kept"
    )
    width: float | None = knob(
        None, "channel-width multiplier; default: the weights' width, else 1.0 (the paper)", resume="kept"
    )
    drop_rate: float = knob(
        0.2, "dropout rate before the classifier (0.2 = the paper's keep probability 0.8)", resume="resume_only"
    )
    aux_weight: float = knob(
        0.4,
        "weight of the auxiliary-head loss (TF-slim); used only by networks that have the head; 0 = off",
        resume="kept",
    )
    residual_scale: float | None = knob(
        None,
        "scale of every residual branch of an Inception-ResNet (1.0 = unscaled; paper section 3.3: 0.1-0.3); "
        "default: the network's own",
        resume="kept",
    )
    sync_bn: bool = knob(
        False, "synchronise BatchNorm statistics across GPUs (multi-GPU CUDA runs only)", resume="resume_only"
    )

    # -- optimisation -------------------------------------------------------------------------------------
    epochs: int = knob(100, "epochs to train (not stated by the paper; Inception-v3 used 100)", resume="may_change")
    batch_size: int = knob(
        32,
        "images per process (GPU) and step; the global batch is this times the number of processes",
        resume="resume_only",
    )
    accumulate: int = knob(
        1,
        "micro-batches of --batch-size per optimiser step (gradient accumulation); steps, lr schedule and logs "
        "count optimiser steps",
        resume="resume_only",
    )
    optimizer: Optimizer = knob(
        "rmsprop_tf",
        "rmsprop_tf = TensorFlow's RMSProp (the paper's best models); sgd = momentum SGD; adamw = AdamW (decoupled "
        "weight decay, betas (--momentum, 0.999); preset finetune_adamw)",
        resume="kept",
    )
    lr: float = knob(0.045, "initial learning rate", resume="resume_only")
    lr_schedule: LrSchedule = knob(
        "staircase", "staircase (the paper's decay) or cosine (from --lr to 0 over --epochs)", resume="resume_only"
    )
    lr_decay_rate: float = knob(
        0.94, "multiply the learning rate by this every --lr-decay-epochs", resume="resume_only"
    )
    lr_decay_epochs: float = knob(2.0, "epochs between learning-rate decays, staircase", resume="resume_only")
    warmup_epochs: float = knob(
        0.0, "linear learning-rate warm-up over this many epochs (not in the paper)", resume="resume_only"
    )
    momentum: float = knob(0.9, "momentum of RMSProp (TF-slim) or SGD; AdamW's beta1", resume="resume_only")
    rmsprop_decay: float = knob(0.9, "RMSProp decay of the squared-gradient average", resume="resume_only")
    rmsprop_eps: float = knob(
        1.0, "RMSProp epsilon, added inside the square root as TensorFlow does", resume="resume_only"
    )
    weight_decay: float = knob(
        4e-5,
        "L2 weight decay on conv and FC weights, added to the gradient (TF-slim); with AdamW decoupled: "
        "each step multiplies them by 1 - lr * weight_decay",
        resume="resume_only",
    )
    label_smoothing: float = knob(
        0.1, "label smoothing of the cross-entropy (0.1 in Inception-v3)", resume="resume_only"
    )
    clip_grad_norm: float = knob(2.0, "clip the global gradient norm to this; 0 = off", resume="resume_only")
    ema_decay: float = knob(
        0.9999,
        "decay of the running average of the weights that is evaluated and saved; 0 = off",
        resume="resume_only",
    )

    # -- execution ----------------------------------------------------------------------------------------
    precision: Precision = knob(
        "fp32", "autocast precision: fp32, bf16, or fp16 (with a gradient scaler)", resume="resume_only"
    )
    channels_last: bool = knob(
        False, "channels-last memory format (faster convolutions on recent GPUs)", resume="may_change"
    )
    compile: bool = knob(False, "compile the training network with torch.compile", resume="may_change")
    grad_checkpointing: bool = knob(
        False,
        "recompute each Inception block's activations in the backward pass to save memory; same results",
        resume="may_change",
    )
    seed: int = knob(
        0, "seed of the initial weights, the data order, the augmentations and dropout", resume="resume_only"
    )
    device: str = knob(
        "auto", "auto (each process's GPU if CUDA is available, else the CPU), cuda or cpu", resume="may_change"
    )
    max_steps: int | None = knob(
        None,
        "stop with a checkpoint once the run reaches this many steps in total (not kept by --resume)",
        resume="may_change",
    )
    checkpoint_every: int = knob(
        0, "also write the last checkpoint every this many steps; 0 = at epoch ends only", resume="may_change"
    )
    eval_every: int = knob(1, "evaluate every this many epochs (and after the last)", resume="may_change")
    log_every: int = knob(
        0,
        f"every this many steps, append a step record to {METRICS}: loss, lr, gradient norm and the share "
        "of zero activations in the last feature map; 0 = off",
        resume="may_change",
    )
    progress: bool = knob(True, "show a progress bar per epoch", resume="may_change")

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
            (self.residual_scale is None or self.residual_scale > 0, "residual_scale must be > 0"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.log_every >= 0, "log_every must be >= 0"),
            (self.train_per_class >= 0 and self.val_per_class >= 0, "train/val_per_class must be >= 0 (0 = all)"),
            (self.input_size is None or self.input_size >= 75, "input_size must be >= 75 (the networks' minimum)"),
            (self.accumulate >= 1, "accumulate must be >= 1 (micro-batches per optimiser step)"),
            (0 <= self.randaugment_magnitude <= 30, "randaugment_magnitude must be in [0, 30]"),
            (self.randaugment_ops >= 1, "randaugment_ops must be >= 1"),
            (0 <= self.random_erasing <= 1, "random_erasing must be in [0, 1] (a probability)"),
            (self.mixup >= 0 and self.cutmix >= 0, "mixup and cutmix must be >= 0 (Beta alphas; 0 = off)"),
        ]
        checks += [(False, message) for message in choice_errors(self)]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid training config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild a config stored in a checkpoint; fields unknown to this version are rejected by name."""
        unknown = unknown_fields(values)
        if unknown:
            raise ValueError(
                f"unknown training config fields {unknown}; was the checkpoint written by a newer version?"
            )
        return cls(**values)


def config_changes(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (old value, new value)} for every field that differs."""
    return {k: (v, getattr(new, k)) for k, v in old.to_dict().items() if getattr(new, k) != v}


def unknown_fields(names: Iterable[str]) -> list[str]:
    """The names among `names` that are no TrainConfig field, sorted."""
    return sorted(set(names) - {f.name for f in fields(TrainConfig)})


def declared_fields(*, resume: Resume) -> frozenset[str]:
    """The names of the TrainConfig fields declared with this `resume` rule (knob)."""
    return frozenset(f.name for f in fields(TrainConfig) if f.metadata.get("resume") == resume)
