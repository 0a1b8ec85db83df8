"""Training with the sibling 1x1 heads of each Inception block run as one convolution and one BatchNorm.

In every Inception block several branches open with a 1x1 ConvBN that reads the block input
(Inception-A: branch0, and the first layers of branch1 and branch2). While training, a block whose
`merged_heads` flag is set (`model.set_merged_heads()`, on by default) runs them as

    y = conv1x1(x, cat(W_0, W_1, ...))      one convolution, the input read once
    y = batch_norm(y, cat(gamma), cat(beta)) one BatchNorm over the concatenated channels
    y = relu(y); split(y) per branch

This computes what the separate heads compute, up to float rounding: each output channel of a 1x1
convolution is its own dot product over the input channels, and BatchNorm normalises each channel
with that channel's own batch statistics. The parameters and buffers stay where they are (the
state-dict keys, the optimiser's parameter groups and the checkpoints do not change): the
concatenated weights are built in the forward pass, so each head's weight, gamma and beta gets its
own slice of the gradient, and the running statistics, updated on a concatenated copy, are written
back to each head's BatchNorm with its `num_batches_tracked`.

The merged form is taken only where it is exact and cheap to check: in training mode, with every
head a plain `nn.BatchNorm2d` that tracks running statistics with the same momentum and eps
(SyncBatchNorm, frozen or evaluating layers, or a cumulative-average momentum run the heads one by
one). In eval mode the flag does nothing; inference merges the heads itself after folding the
BatchNorm (export/blocks.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet.models.layers import ConvBN


class MergeableHeads(nn.Module):
    """Base of the blocks whose branches open with 1x1 ConvBNs on the block input; holds the flag."""

    merged_heads: bool = True

    def merging(self) -> bool:
        """Whether this forward pass runs the 1x1 heads merged: the flag is set and the block trains."""
        return self.merged_heads and self.training


def merged_heads(x: torch.Tensor, heads: Sequence[ConvBN]) -> list[torch.Tensor]:
    """The outputs of the 1x1 ConvBN `heads` on `x`, computed as one conv, one BatchNorm and one ReLU.

    Falls back to running the heads one by one where merging would not be exact (see the module
    docstring); the result is the same either way.
    """
    if not _mergeable(heads):
        return [head(x) for head in heads]
    bns = [head.bn for head in heads]
    for bn in bns:
        bn.num_batches_tracked.add_(1)
    running_mean = torch.cat([bn.running_mean for bn in bns])
    running_var = torch.cat([bn.running_var for bn in bns])
    y = F.conv2d(x, torch.cat([head.conv.weight for head in heads]))
    y = F.batch_norm(
        y,
        running_mean,
        running_var,
        torch.cat([bn.weight for bn in bns]),
        torch.cat([bn.bias for bn in bns]),
        training=True,
        momentum=bns[0].momentum,
        eps=bns[0].eps,
    )
    sizes = [bn.num_features for bn in bns]
    with torch.no_grad():  # the updated statistics back into each head's buffers
        for bn, mean, var in zip(bns, running_mean.split(sizes), running_var.split(sizes), strict=True):
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
    return list(F.relu_(y).split(sizes, dim=1))


def tail(branch: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The layers of `branch` after its leading 1x1 head, applied to that head's output `x`."""
    for layer in list(branch)[1:]:
        x = layer(x)
    return x


def pooled_head(x: torch.Tensor, branch: nn.Sequential) -> torch.Tensor:
    """The pool-then-1x1 branch (3x3 average pool, 1x1 ConvBN) with the pool moved after the convolution.

    Exact: a 1x1 convolution without bias is a per-pixel linear map, so it commutes with any average
    pool (zero padding included or not); the pool then runs on the conv's few output channels instead
    of the block's many input channels. BatchNorm and ReLU come after the pool, as before.
    """
    pool, head = branch
    return head.act(head.bn(pool(head.conv(x))))


def _mergeable(heads: Sequence[ConvBN]) -> bool:
    """Whether merging `heads` is exact: plain 1x1 convs, plain training BatchNorms with equal settings."""
    first = heads[0].bn
    for head in heads:
        conv, bn = head.conv, head.bn
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.padding != (0, 0) or conv.groups != 1:
            return False
        if conv.dilation != (1, 1) or conv.bias is not None or conv.padding_mode != "zeros":
            return False
        if type(bn) is not nn.BatchNorm2d or not (bn.training and bn.track_running_stats and bn.affine):
            return False
        if bn.momentum is None or bn.momentum != first.momentum or bn.eps != first.eps:
            return False
    return True
