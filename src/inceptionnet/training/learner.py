"""What a training step acts on: the network and, around it, the optimiser, the weight average,
the fp16 loss scaler, the feature probe and the DDP / torch.compile wrappers.

The network is built only through `create_model`, with every option the configuration sets (or,
when fine-tuning, that its weights bring: finetune.py), so the build options it records
(`model.build_options`, saved in each checkpoint) rebuild it exactly. A network built by the
caller can take its place (`model=`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from inceptionnet.card import UnknownRule
from inceptionnet.cpu import cpu_features
from inceptionnet.devices import DTYPES
from inceptionnet.models.merged import merge_heads
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
from inceptionnet.training.finetune import (
    adopt_network,
    create_network,
    freeze,
    frozen_note,
    model_options,
    network_from_weights,
)
from inceptionnet.training.optim import WeightAverage, build_optimizer
from inceptionnet.training.probe import LastFeatureProbe


@dataclass(frozen=True)
class Learner:
    """The objects a run trains, saves and evaluates."""

    model: nn.Module  # the network itself: saved, averaged and probed
    net: nn.Module  # what the step calls: the network, wrapped by DDP and/or torch.compile when asked
    optimizer: torch.optim.Optimizer
    ema: WeightAverage | None
    scaler: torch.amp.GradScaler | None  # fp16 only
    probe: LastFeatureProbe | None  # zeros before pooling, on logged steps
    autocast: AbstractContextManager
    use_aux: bool  # the loss includes the auxiliary head's
    notes: tuple[str, ...] = ()  # console lines on how the network starts: new classifier, frozen stages, lr scale

    @property
    def evaluated(self) -> nn.Module:
        """The network that validation measures and best.pt selects by: the weight average if there is one."""
        return self.ema.module if self.ema is not None else self.model

    def describe_labels(self, label_mode: str, thresholds: tuple[float, ...] | None = None) -> None:
        """Set how the network's outputs are read (`label_mode`, multi-label `thresholds`) on the network and
        its weight average alike: what their cards, the model folder and the checkpoints then say."""
        for network in {id(n): n for n in (self.model, self.evaluated)}.values():
            network.label_mode = label_mode
            network.thresholds = thresholds
        self.describe_calibration(None, None)  # fitted again by the next validation of a single-label run

    def describe_calibration(self, temperature: float | None, unknown: UnknownRule | None) -> None:
        """Set the single-label calibration fitted on the last validation (None: none) on both networks alike."""
        for network in {id(n): n for n in (self.model, self.evaluated)}.values():
            network.temperature = temperature
            network.unknown = unknown


def build_learner(cfg: TrainConfig, ctx: Context, *, num_classes: int, model: nn.Module | None = None) -> Learner:
    """The network on this rank's device, and everything that trains it.

    `model`: a network to train instead of the one `cfg` describes (trained in place; see `build_network`).
    """
    model, use_aux, notes = build_network(cfg, num_classes=num_classes, model=model)
    if cfg.precision == "bf16" and ctx.device.type == "cpu" and not cpu_features().bf16:
        notes = (*notes, f"bf16 on {cpu_features().describe()}: emulated, many times slower than --precision fp32")
    # The sibling 1x1 heads trained as one conv (models/merged.py): same state-dict keys and parameters, so
    # it comes before anything copies or wraps the network. SyncBatchNorm heads run one by one.
    merge_heads(model)
    if cfg.sync_bn and ctx.distributed:
        if ctx.device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA (NCCL); on CPUs train without it")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(ctx.device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
    ema = WeightAverage(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    probe = LastFeatureProbe(model) if cfg.log_every > 0 else None
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(ctx.device.type) if cfg.precision == "fp16" else None
    net: nn.Module = model
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None, forward_sync_buffers=False
        )
    if cfg.compile:
        net = torch.compile(net)
    return Learner(
        model=model,
        net=net,
        optimizer=optimizer,
        ema=ema,
        scaler=scaler,
        probe=probe,
        autocast=autocast(cfg.precision, ctx.device),
        use_aux=use_aux,
        notes=notes,
    )


def build_network(
    cfg: TrainConfig, *, num_classes: int, model: nn.Module | None = None
) -> tuple[nn.Module, bool, tuple[str, ...]]:
    """The network, whether it has an auxiliary head to train, and the lines that say how it starts.

    The network is `model` when given (its classifier replaced only if its size does not fit
    `num_classes`), else `cfg.model` with the weights `cfg.weights` and a new classifier, else
    `cfg.model` freshly initialised. The auxiliary head is built when aux_weight > 0 and the
    network has one (inception_resnet_v1 and the paper's Inception-ResNet-v2 have none). Then the
    first `cfg.freeze` stages are frozen.
    """
    starts_trained = model is not None or cfg.weights is not None
    if not starts_trained and (cfg.freeze or cfg.pretrained_lr_scale != 1.0):
        raise ValueError(
            "--freeze and --pretrained-lr-scale apply to pretrained layers: give --weights (a tag such as tf_in1k, "
            "a weights file or a run folder), or train(cfg, model=...) with a loaded network"
        )
    notes: list[str | None] = []
    if model is not None:
        model, note = adopt_network(model, cfg, num_classes=num_classes)
        notes.append(note)
    elif cfg.weights is not None:
        model, note = network_from_weights(cfg, num_classes=num_classes, aux=cfg.aux_weight > 0)
        notes.append(note)
    else:
        model = create_network(cfg.model, aux=cfg.aux_weight > 0, **model_options(cfg, num_classes=num_classes))
    frozen = freeze(model, cfg.freeze)
    if frozen:
        notes.append(frozen_note(model, frozen))
    if cfg.pretrained_lr_scale != 1.0:
        notes.append(f"learning rate of the pretrained layers: x{cfg.pretrained_lr_scale:g} (the classifiers: x1)")
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    use_aux = cfg.aux_weight > 0 and model.aux is not None
    return model, use_aux, tuple(n for n in notes if n is not None)


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The forward passes' autocast context for "fp32" (none), "bf16" or "fp16"."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
