"""The paper's optimiser, learning-rate schedule and weight averaging (paper-spec section 10), and the
parameter groups of fine-tuning.

- `build_optimizer`: RMSpropTF, momentum SGD, or AdamW (not in the paper: for fine-tuning, preset
  "finetune_adamw").
- `RMSpropTF`: RMSProp as TensorFlow computes it. `torch.optim.RMSprop` differs in three ways
  that matter with the paper's epsilon of 1.0: TF adds epsilon inside the square root, starts the
  square average at 1 rather than 0, and folds the learning rate into the momentum buffer.
- `parameter_groups`: weight decay on weights only; when fine-tuning with a learning-rate multiplier
  for the pretrained layers, separate groups for them, each group carrying its "lr_scale", which
  `set_learning_rate` applies at every step.
- `learning_rate`: 0.045 x 0.94 every 2 epochs (staircase), or `cosine_learning_rate`: pure functions
  of the step, so a resumed run needs only the step to continue the schedule (`schedule` binds a
  configuration's values).
- `WeightAverage`: the running (exponential) average of the weights that the paper evaluates.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch import nn

from inceptionnet.training.config import TrainConfig


class RMSpropTF(torch.optim.Optimizer):
    """TensorFlow's RMSProp with momentum (tf.compat.v1.train.RMSPropOptimizer, TF-slim's default).

    Per parameter p with gradient g (L2 weight decay first adds `weight_decay * p` to g):

        ms  <- decay * ms + (1 - decay) * g^2          ms starts at 1
        mom <- momentum * mom + lr * g / sqrt(ms + eps)
        p   <- p - mom

    The learning rate is inside the momentum buffer, so a schedule's lr change acts gradually.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        *,
        lr: float = 0.045,
        decay: float = 0.9,
        momentum: float = 0.9,
        eps: float = 1.0,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not 0 <= decay < 1 or not 0 <= momentum < 1:
            raise ValueError(
                f"RMSpropTF needs lr, eps, weight_decay >= 0 and decay, momentum in [0, 1); got lr={lr}, "
                f"eps={eps}, weight_decay={weight_decay}, decay={decay}, momentum={momentum}"
            )
        defaults = {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay, momentum, eps, wd = (group[k] for k in ("lr", "decay", "momentum", "eps", "weight_decay"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not support sparse gradients")
                grad = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)  # TF: ones
                    if momentum > 0:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                square_avg = state["square_avg"]
                square_avg.mul_(decay).addcmul_(grad, grad, value=1 - decay)
                denom = square_avg.add(eps).sqrt_()  # eps inside the root
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).addcdiv_(grad, denom, value=lr)
                    p.sub_(buf)
                else:
                    p.addcdiv_(grad, denom, value=-lr)
        return loss


# AdamW's second-moment decay and epsilon: torch's (and the AdamW paper's) defaults, fixed.
ADAMW_BETA2 = 0.999
ADAMW_EPS = 1e-8

# The classifiers (and the auxiliary head, a training-only addition): what fine-tuning starts afresh.
HEADS = ("head.", "aux.")


def parameter_groups(model: nn.Module, weight_decay: float, *, pretrained_lr_scale: float = 1.0) -> list[dict]:
    """The trainable parameters (frozen ones are left out) in groups of one weight decay and one lr scale.

    Weight decay on conv and FC weights only, as TF-slim's regularisers: not on biases or BN. With
    `pretrained_lr_scale` != 1, the parameters outside `HEADS` (the pretrained layers) form groups of
    their own whose "lr_scale" is that multiplier; the heads' groups come first, so that
    `param_groups[0]` runs at the schedule's own rate.
    """
    split = pretrained_lr_scale != 1.0
    head = {True: _group(weight_decay, 1.0), False: _group(0.0, 1.0)}  # keyed by "has weight decay"
    body = {True: _group(weight_decay, pretrained_lr_scale), False: _group(0.0, pretrained_lr_scale)} if split else head
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if name.startswith(HEADS) else body)[p.ndim > 1]["params"].append(p)
    return [*head.values(), *body.values()] if split else [*head.values()]


def _group(weight_decay: float, lr_scale: float) -> dict:
    return {"params": [], "weight_decay": weight_decay, "lr_scale": lr_scale}


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the schedule's rate `lr` for the coming step: each group runs at lr times its "lr_scale"."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # checkpoints written before lr_scale existed: 1.0


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimiser, at the schedule's first learning rate."""
    groups = parameter_groups(model, cfg.weight_decay, pretrained_lr_scale=cfg.pretrained_lr_scale)
    if not any(g["params"] for g in groups):
        raise ValueError("nothing to train: every parameter of the network is frozen (requires_grad=False)")
    for group in groups:
        group["lr"] = cfg.lr * group["lr_scale"]
    if cfg.optimizer == "rmsprop_tf":
        return RMSpropTF(groups, lr=cfg.lr, decay=cfg.rmsprop_decay, momentum=cfg.momentum, eps=cfg.rmsprop_eps)
    if cfg.optimizer == "sgd":
        # torch's SGD adds weight_decay * p to the gradient: the same L2 as above.
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        # Decoupled: each group's weight_decay shrinks its weights by lr * weight_decay per step, outside the
        # gradient's moments (biases and BN stay undecayed, as above). beta1 is --momentum; beta2 torch's.
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, ADAMW_BETA2), eps=ADAMW_EPS)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose rmsprop_tf, sgd or adamw")


def learning_rate(
    step: int,
    *,
    base_lr: float,
    steps_per_epoch: int,
    decay_rate: float = 0.94,
    decay_epochs: float = 2.0,
    warmup_epochs: float = 0.0,
) -> float:
    """The learning rate for optimiser step `step` (0-based).

    base_lr x decay_rate ** floor(epoch / decay_epochs), epoch = step / steps_per_epoch (TF-slim's
    exponential_decay with staircase=True). With a warm-up, the first warmup_epochs ramp linearly
    from base_lr / warmup_steps to base_lr, and the decay counts from the start of training.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return base_lr * decay_rate ** math.floor(step / (decay_epochs * steps_per_epoch))


def cosine_learning_rate(
    step: int, *, base_lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0
) -> float:
    """The learning rate for optimiser step `step` (0-based) of a cosine schedule.

    After the same linear warm-up as `learning_rate`, half a cosine from base_lr down to 0 at the
    end of the last epoch: base_lr x (1 + cos(pi x t)) / 2, t the fraction of the steps after the
    warm-up that have passed. The rate depends on the run's length: changing `epochs` on resume
    bends the rest of the curve.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(epochs * steps_per_epoch - warmup_steps, 1)
    return base_lr * (1 + math.cos(math.pi * min(t, 1.0))) / 2


def schedule(cfg: TrainConfig, *, steps_per_epoch: int) -> Callable[[int], float]:
    """The configured learning rate as a function of the step alone (`learning_rate` or
    `cosine_learning_rate` with cfg's values)."""
    common = {"base_lr": cfg.lr, "steps_per_epoch": steps_per_epoch, "warmup_epochs": cfg.warmup_epochs}
    if cfg.lr_schedule == "cosine":
        return partial(cosine_learning_rate, epochs=cfg.epochs, **common)
    return partial(learning_rate, decay_rate=cfg.lr_decay_rate, decay_epochs=cfg.lr_decay_epochs, **common)


class WeightAverage(nn.Module):
    """Exponential moving average of a model's weights and BatchNorm statistics (evaluated, not trained).

    Like TensorFlow's ExponentialMovingAverage with `num_updates`, the decay is
    min(decay, (1 + n) / (10 + n)) at update n, so the average is meaningful early in training.
    Floating-point parameters and buffers are averaged (TF-slim averages BN's moving statistics
    too); integer buffers (BN's batch counter) are copied.
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        n = int(self.num_updates)
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        avg, new = self.module.state_dict(), model.state_dict()
        floats_avg, floats_new = [], []
        for name, value in avg.items():
            if value.is_floating_point():
                floats_avg.append(value)
                floats_new.append(new[name])
            else:
                value.copy_(new[name])
        torch._foreach_lerp_(floats_avg, floats_new, 1 - d)  # avg += (1 - d) * (new - avg)
        self.num_updates += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
