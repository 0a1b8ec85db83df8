"""What a training step acts on: the network and, around it, the optimiser, the weight average,
the fp16 loss scaler, the feature probe and the DDP / torch.compile wrappers.

The network is built only through `create_model`, with every option the configuration sets, so
the build options it records (`model.build_options`, saved in each checkpoint) rebuild it exactly.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from inceptionnet.devices import DTYPES
from inceptionnet.factory import create_model
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.distributed import Context
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

    @property
    def evaluated(self) -> nn.Module:
        """The network that validation measures and best.pt selects by: the weight average if there is one."""
        return self.ema.module if self.ema is not None else self.model


def build_learner(cfg: TrainConfig, ctx: Context, *, num_classes: int) -> Learner:
    """The network on this rank's device, and everything that trains it."""
    model, use_aux = build_network(cfg, num_classes=num_classes)
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
    )


def build_network(cfg: TrainConfig, *, num_classes: int) -> tuple[nn.Module, bool]:
    """The network, and whether it has an auxiliary head to train.

    The head is built when aux_weight > 0 and the network has one (inception_resnet_v1 and the
    paper's Inception-ResNet-v2 have none).
    """
    options = cfg.model_options(num_classes=num_classes)
    use_aux = cfg.aux_weight > 0
    try:
        model = create_model(cfg.model, **options, aux_logits=use_aux)
    except ValueError:
        if not use_aux:
            raise
        model, use_aux = create_model(cfg.model, **options), False  # no auxiliary head: the main loss only
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model, use_aux


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The forward passes' autocast context for "fp32" (none), "bf16" or "fp16"."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
