"""Activation checkpointing per Inception block, to train with larger batches in the same memory.

`enable_checkpointing(model)` makes the repeated-block stages (`blocks_a`, `blocks_b`, `blocks_c`)
keep only each block's input during the forward pass and recompute the block's activations during
the backward pass (torch.utils.checkpoint, non-reentrant). Memory drops to about one block's
activations per stage plus the block boundaries; the price is one extra forward pass of those blocks.

State-dict keys do not change (the stage keeps its children; only its class changes), so checkpoints
load either way. BatchNorm running statistics are updated once per step, as without checkpointing:
the recomputation runs with the BN momentum set to zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

STAGES = ("blocks_a", "blocks_b", "blocks_c")


@contextlib.contextmanager
def _frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Run a recomputation without touching BN running statistics (momentum 0 keeps them as they are)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(bn.momentum, None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone()) for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        yield
    finally:
        for bn, (momentum, tracked) in zip(bns, saved, strict=True):
            bn.momentum = momentum
            if tracked is not None:
                bn.num_batches_tracked.copy_(tracked)


class CheckpointedSequential(nn.Sequential):
    """An nn.Sequential whose children run under activation checkpointing while training with grad.

    In eval mode or without grad it is a plain Sequential (checkpointing only pays off in backward).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        for block in self:
            x = checkpoint(
                block,
                x,
                use_reentrant=False,
                context_fn=lambda block=block: (contextlib.nullcontext(), _frozen_bn_stats(block)),
            )
        return x


def enable_checkpointing(model: nn.Module, *, stages: Sequence[str] = STAGES) -> nn.Module:
    """Turn on per-block activation checkpointing in `model`'s block stages, in place; returns `model`.

    Every network of `create_model` has the three stages; a missing one is an error naming the ones that exist.
    """
    for name in stages:
        stage = getattr(model, name, None)
        if not isinstance(stage, nn.Sequential):
            have = [n for n, m in model.named_children() if isinstance(m, nn.Sequential)]
            raise ValueError(f"{type(model).__name__} has no block stage {name!r}; stages present: {have}")
        stage.__class__ = CheckpointedSequential
    return model


def disable_checkpointing(model: nn.Module) -> nn.Module:
    """Undo `enable_checkpointing`, in place; returns `model`."""
    for stage in model.modules():
        if type(stage) is CheckpointedSequential:
            stage.__class__ = nn.Sequential
    return model
