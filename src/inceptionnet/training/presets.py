"""Presets: named values of TrainConfig, the configuration a command line asks for, and the command line
that sets a configuration (train_command).

`PRESETS["paper"]` is the recipe of the paper (section 4) completed with the authors' released
TF-slim training script where the paper is silent (paper-spec section 10); `PRESETS["demo"]`
trains a small Inception-ResNet-v1 on the built-in CIFAR-10 subset in minutes on a CPU;
`PRESETS["modern"]` is the demo with the augmentation and schedule of recent recipes (automatic
augmentation, random erasing, mixup / cutmix, cosine decay);
`PRESETS["finetune"]` starts from published ImageNet weights with a new classifier for a folder of
a few thousand images (docs/finetuning.md); `PRESETS["finetune_adamw"]` does the same with AdamW.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from inceptionnet.training.config import TrainConfig, unknown_fields

# Built-in demo: the CIFAR-10 subset upscaled to 75 px, Inception-ResNet-v1 at 1/4 width, minutes on a CPU.
# The paper's recipe with a schedule for a short run: a faster lr decay, a short weight average, and
# larger crops of the tiny images.
_DEMO = TrainConfig(
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
)

PRESETS: dict[str, TrainConfig] = {
    # The paper's recipe (section 4 + TF-slim), for ImageNet on GPUs.
    # Execution settings (bf16, channels-last) do not change the recipe; pass --precision fp32 on GPUs without bf16.
    "paper": TrainConfig(precision="bf16", channels_last=True, num_workers=8),
    "demo": _DEMO,
    # The demo's network, data and length with the augmentation and schedule of the last years' recipes (timm,
    # DeiT, "ResNet strikes back"), made lighter for a short run on few images. docs/training.md gives each
    # number's reason and measures it against the demo preset.
    "modern": dataclasses.replace(
        _DEMO,
        lr_schedule="cosine",  # to 0 over the run, after the warm-up, instead of the paper's staircase
        augment="trivialaugment",  # one op per image at a random strength: nothing to tune, as good as RandAugment
        random_erasing=0.25,  # timm's value
        mixup=0.2,  # the mixup paper's ImageNet alpha; 0.8 (DeiT) is for 300 epochs
        cutmix=1.0,  # the CutMix paper's alpha; with mixup, half the batches each
        label_smoothing=0.1,  # the paper's (Inception-v3), as in the recipes above
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
# The same fine-tuning with AdamW: its usual lr for a batch of 32 from pretrained weights, and decoupled
# weight decay at the usual 0.05 (its weight_decay multiplies lr, unlike the L2 of rmsprop_tf / sgd).
PRESETS["finetune_adamw"] = dataclasses.replace(PRESETS["finetune"], optimizer="adamw", lr=2e-4, weight_decay=0.05)


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A preset with some fields replaced: `preset("paper", data="/imagenet", epochs=160)`."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    unknown = unknown_fields(overrides)
    if unknown:
        known = sorted(f.name for f in dataclasses.fields(TrainConfig))
        raise ValueError(f"unknown training config fields {unknown}; known fields: {', '.join(known)}")
    return dataclasses.replace(PRESETS[name], **overrides)


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


def train_command(cfg: TrainConfig) -> str:
    """The `inceptionnet train` command line that sets `cfg`: one option per field that differs from the default.

    Each option is the field's name with dashes (cli/options.py); a field left at None is its default.
    """
    words = ["inceptionnet", "train"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value == f.default or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            words += [flag, *(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)
