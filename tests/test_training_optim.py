"""The optimiser, schedule and weight average against their definitions written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from inceptionnet.training.config import TrainConfig
from inceptionnet.training.optim import (
    RMSpropTF,
    WeightAverage,
    build_optimizer,
    cosine_learning_rate,
    learning_rate,
    parameter_groups,
    schedule,
    set_learning_rate,
)


def tf_rmsprop_reference(p0, grads, lrs, *, decay, momentum, eps, weight_decay):
    """TensorFlow's ApplyRMSProp kernel (tf.compat.v1.train.RMSPropOptimizer), in float64 numpy:
    ms starts at 1; ms += (1 - decay) * (g^2 - ms); mom = momentum * mom + lr * g / sqrt(ms + eps); p -= mom.
    The L2 regulariser 0.5 * wd * ||p||^2, added to the loss as TF-slim does, contributes wd * p to g."""
    p = np.array(p0, dtype=np.float64)
    ms = np.ones_like(p)
    mom = np.zeros_like(p)
    for g, lr in zip(grads, lrs, strict=True):
        g = g + weight_decay * p
        ms = ms + (1 - decay) * (g * g - ms)
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        p = p - mom
    return p


@pytest.mark.parametrize("momentum", [0.9, 0.0])
@pytest.mark.parametrize("weight_decay", [0.0, 4e-5])
def test_rmsprop_tf_matches_tensorflow_update_rule(momentum: float, weight_decay: float) -> None:
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(3, 4))
    grads = [rng.normal(scale=3.0, size=(3, 4)) for _ in range(6)]
    lrs = [0.045, 0.045, 0.03, 0.03, 0.01, 0.2]  # the lr changes between steps: it sits inside the momentum
    expected = tf_rmsprop_reference(p0, grads, lrs, decay=0.9, momentum=momentum, eps=1.0, weight_decay=weight_decay)

    param = nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = RMSpropTF([param], lr=lrs[0], decay=0.9, momentum=momentum, eps=1.0, weight_decay=weight_decay)
    for g, lr in zip(grads, lrs, strict=True):
        opt.param_groups[0]["lr"] = lr
        param.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_rmsprop_tf_first_step_by_hand() -> None:
    # One scalar step, digits on paper: g = 2, ms = 0.9 * 1 + 0.1 * 4 = 1.3, update = 0.1 * 2 / sqrt(1.3 + 1.0).
    param = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = RMSpropTF([param], lr=0.1, decay=0.9, momentum=0.9, eps=1.0)
    param.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    assert param.item() == pytest.approx(1.0 - 0.2 / math.sqrt(2.3), abs=1e-15)
    assert opt.state[param]["square_avg"].item() == pytest.approx(1.3)


def test_rmsprop_tf_differs_from_torch_rmsprop() -> None:
    # torch adds eps outside the root and starts ms at 0: with eps = 1 the first steps differ a lot.
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(10))
    b = nn.Parameter(a.detach().clone())
    grad = torch.randn(10) * 0.01
    a.grad, b.grad = grad.clone(), grad.clone()
    RMSpropTF([a], lr=0.1, momentum=0.0).step()
    torch.optim.RMSprop([b], lr=0.1, alpha=0.9, eps=1.0).step()
    assert not torch.allclose(a, b, atol=1e-4)


def test_rmsprop_tf_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="decay"):
        RMSpropTF([nn.Parameter(torch.zeros(1))], decay=1.5)


def test_learning_rate_staircase_decay() -> None:
    lr = lambda step: learning_rate(step, base_lr=0.045, steps_per_epoch=100)  # noqa: E731
    assert lr(0) == 0.045
    assert lr(199) == 0.045  # epoch 1.99: still the first stair
    assert lr(200) == pytest.approx(0.045 * 0.94)
    assert lr(399) == pytest.approx(0.045 * 0.94)
    assert lr(400) == pytest.approx(0.045 * 0.94**2)
    assert lr(100 * 100) == pytest.approx(0.045 * 0.94**50)  # after 100 epochs


def test_learning_rate_warmup_is_linear_then_joins_the_schedule() -> None:
    kw = {"base_lr": 0.1, "steps_per_epoch": 10, "decay_rate": 0.5, "decay_epochs": 1.0, "warmup_epochs": 1.0}
    assert [learning_rate(s, **kw) for s in range(10)] == pytest.approx([0.01 * (s + 1) for s in range(10)])
    assert learning_rate(10, **kw) == pytest.approx(0.05)  # one epoch of decay has already happened


def test_cosine_learning_rate_after_the_warmup() -> None:
    kw = {"base_lr": 0.1, "steps_per_epoch": 10, "epochs": 5, "warmup_epochs": 1.0}
    assert [cosine_learning_rate(s, **kw) for s in range(10)] == pytest.approx([0.01 * (s + 1) for s in range(10)])
    assert cosine_learning_rate(10, **kw) == pytest.approx(0.1)  # the top of the cosine, right after the warm-up
    assert cosine_learning_rate(30, **kw) == pytest.approx(0.05)  # half-way through the 40 steps after it
    assert cosine_learning_rate(40, **kw) == pytest.approx(0.1 * (1 + math.cos(math.pi * 0.75)) / 2)
    assert cosine_learning_rate(50, **kw) == pytest.approx(0.0, abs=1e-15)  # the end of the last epoch
    assert cosine_learning_rate(0, base_lr=0.1, steps_per_epoch=10, epochs=5) == 0.1  # no warm-up


def test_schedule_follows_the_config() -> None:
    cosine = schedule(TrainConfig(lr=0.2, lr_schedule="cosine", epochs=4), steps_per_epoch=5)
    assert cosine(10) == pytest.approx(0.1)
    staircase = schedule(TrainConfig(lr=0.2, lr_decay_rate=0.5, lr_decay_epochs=1.0), steps_per_epoch=5)
    assert staircase(10) == pytest.approx(0.05)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.bn = nn.BatchNorm2d(3)


class _Headed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _Tiny()
        self.body = _Tiny()
        self.head = nn.Linear(3, 2)


def test_weight_average_follows_tf_exponential_moving_average() -> None:
    torch.manual_seed(0)
    model = _Tiny()
    avg = WeightAverage(model, decay=0.5)
    expected = model.conv.weight.detach().clone()
    expected_mean = model.bn.running_mean.clone()
    for n in range(4):
        with torch.no_grad():
            model.conv.weight.add_(torch.randn_like(model.conv.weight))
            model.bn.running_mean.add_(1.0)
            model.bn.num_batches_tracked += 3
        d = min(0.5, (1 + n) / (10 + n))  # TF's num_updates warm-up of the decay
        assert avg.current_decay() == pytest.approx(d)
        avg.update(model)
        expected = d * expected + (1 - d) * model.conv.weight.detach()
        expected_mean = d * expected_mean + (1 - d) * model.bn.running_mean
    torch.testing.assert_close(avg.module.conv.weight, expected)
    torch.testing.assert_close(avg.module.bn.running_mean, expected_mean)  # BN statistics are averaged
    assert avg.module.bn.num_batches_tracked.item() == 12  # integer buffers are copied
    assert int(avg.num_updates) == 4
    assert not any(p.requires_grad for p in avg.module.parameters())


def test_weight_average_state_round_trip() -> None:
    model = _Tiny()
    avg = WeightAverage(model, decay=0.9)
    avg.update(model)
    other = WeightAverage(_Tiny(), decay=0.9)
    other.load_state_dict(avg.state_dict())
    assert int(other.num_updates) == 1
    torch.testing.assert_close(other.module.conv.weight, avg.module.conv.weight)


def test_weight_decay_only_on_conv_and_fc_weights() -> None:
    model = _Tiny()
    decay, no_decay = parameter_groups(model, 4e-5)
    assert decay["params"] == [model.conv.weight] and decay["weight_decay"] == 4e-5
    assert {id(p) for p in no_decay["params"]} == {id(model.conv.bias), id(model.bn.weight), id(model.bn.bias)}
    assert no_decay["weight_decay"] == 0.0


def test_build_optimizer_choices() -> None:
    model = _Tiny()
    opt = build_optimizer(model, TrainConfig())
    assert isinstance(opt, RMSpropTF)
    assert opt.defaults["eps"] == 1.0 and opt.defaults["decay"] == 0.9 and opt.defaults["momentum"] == 0.9
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert sgd.param_groups[0]["weight_decay"] == 4e-5


def test_pretrained_layers_get_their_own_groups_and_frozen_ones_none() -> None:
    model = _Headed()
    model.stem.requires_grad_(False)  # frozen
    groups = parameter_groups(model, 4e-5, pretrained_lr_scale=0.1)
    assert [(g["weight_decay"], g["lr_scale"]) for g in groups] == [(4e-5, 1.0), (0.0, 1.0), (4e-5, 0.1), (0.0, 0.1)]
    assert [g["params"] for g in groups[:2]] == [[model.head.weight], [model.head.bias]]  # the head first
    assert groups[2]["params"] == [model.body.conv.weight]
    assert {id(p) for p in groups[3]["params"]} == {
        id(model.body.conv.bias),
        id(model.body.bn.weight),
        id(model.body.bn.bias),
    }
    same_rate = parameter_groups(model, 4e-5)  # no multiplier: the two groups of weight decay only
    assert [g["lr_scale"] for g in same_rate] == [1.0, 1.0]
    assert not {id(p) for g in same_rate for p in g["params"]} & {id(p) for p in model.stem.parameters()}


def test_set_learning_rate_scales_each_group() -> None:
    model = _Headed()
    opt = build_optimizer(model, TrainConfig(optimizer="sgd", lr=0.2, pretrained_lr_scale=0.25))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2, 0.2, 0.05, 0.05])
    set_learning_rate(opt, 0.04)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.04, 0.04, 0.01, 0.01])
    # The multiplier is part of the optimiser's state: restoring it brings back the saved one.
    again = build_optimizer(_Headed(), TrainConfig(optimizer="sgd", lr=0.2, pretrained_lr_scale=0.5))
    again.load_state_dict(opt.state_dict())
    assert [g["lr_scale"] for g in again.param_groups] == [1.0, 1.0, 0.25, 0.25]
    del opt.param_groups[0]["lr_scale"]  # a group restored from a checkpoint that predates the multiplier
    set_learning_rate(opt, 0.08)
    assert opt.param_groups[0]["lr"] == 0.08


def test_an_optimizer_needs_something_to_train() -> None:
    with pytest.raises(ValueError, match="every parameter of the network is frozen"):
        build_optimizer(_Tiny().requires_grad_(False), TrainConfig())
