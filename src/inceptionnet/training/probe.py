"""Statistics of the last feature map, the one the classifier pools: the symptom of a "dead" network.

Section 3.3 of the paper: residual Inception networks wider than about 1000 filters "died" early in
training, "the last layer before the average pooling started to produce only zeros". A
`LastFeatureProbe` watches exactly that tensor (the input of the network's classifier head) on the
training steps it is armed for.
"""

from __future__ import annotations

import torch
from torch import nn

from inceptionnet.models import InceptionNetwork


class LastFeatureProbe:
    """Measures, on armed forward passes, the share of zeros in the feature map before pooling.

    - `zero_fraction`: the share of exact zeros among all its values (about 0.5 in a healthy ReLU
      network; 1.0 when the layer outputs only zeros);
    - `dead_channels`: the share of channels that are zero for every image and position of the batch.
    """

    def __init__(self, model: InceptionNetwork) -> None:
        if not isinstance(model, InceptionNetwork):
            raise TypeError(f"{type(model).__name__} is not a network of create_model; no classifier `head` to watch")
        self.armed = False
        self.values = torch.zeros(2)
        self._handle = model.head.register_forward_pre_hook(self._measure)

    def _measure(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if not self.armed:
            return
        x = args[0].detach()
        zero = x == 0
        per_channel = zero.transpose(0, 1).reshape(x.shape[1], -1).all(dim=1)
        self.values = torch.stack([zero.float().mean(), per_channel.float().mean()])
        self.armed = False

    def take(self, device: torch.device) -> torch.Tensor:
        """[zero_fraction, dead_channels] of the last armed pass (zeros if none ran), on `device`."""
        values, self.values = self.values, torch.zeros(2)
        return values.to(device)

    def remove(self) -> None:
        self._handle.remove()
