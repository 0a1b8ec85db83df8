"""Training with each block's sibling 1x1 heads merged (`merge_heads`, models/merged.py) gives the step of the
separate heads; the blocks themselves have one forward, the figure's."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inceptionnet import create_model
from inceptionnet.export.fuse import fuse_for_inference
from inceptionnet.models import merged as merged_module
from inceptionnet.models.merged import HEAD_PLANS, figure_class, merge_heads
from inceptionnet.training import learner
from inceptionnet.training.loop import train

ALL = ["inception_v3", "inception_v4", "inception_resnet_v1", "inception_resnet_v2", "inception_resnet_v2_paper"]


def _pair(name: str, **options: object) -> tuple[nn.Module, nn.Module]:
    """The same network twice, in float64: heads run one by one, heads merged.

    float64 because a freshly initialised deep network with BatchNorm amplifies rounding: in float32 a
    1e-7 relative change of the input moves some gradients by 10%, so only float64 shows that two
    computations are the same arithmetic.
    """
    torch.manual_seed(0)
    plain = create_model(name, width=0.25, num_classes=5, drop_rate=0.0, **options).double()
    merged = merge_heads(copy.deepcopy(plain))
    assert _merged_blocks(merged) and not _merged_blocks(plain)
    return plain, merged


def _merged_blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if type(m) is not figure_class(m)]


def _step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward and backward in training mode; the logits."""
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits, torch.arange(len(x)) % 5).backward()
    return logits


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float64 rounding, relative to the tensor's norm (elementwise tests fail on near-zero entries).

    A gradient that is zero in exact arithmetic (a bias followed by BatchNorm) is rounding noise around 1e-17.
    """
    return bool((a - b).norm() <= 1e-9 * a.norm() + 1e-12)


def _assert_same_step(plain: nn.Module, merged: nn.Module) -> None:
    """Every parameter's gradient and every buffer (BN running statistics and counts) agree."""
    grads = dict(merged.named_parameters())
    for key, p in plain.named_parameters():
        assert (p.grad is None) == (grads[key].grad is None), key
        assert p.grad is None or _close(p.grad, grads[key].grad), key
    buffers = dict(merged.named_buffers())
    for key, b in plain.named_buffers():
        assert torch.allclose(b, buffers[key], rtol=1e-10, atol=1e-12), key


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ALL)
def test_merged_heads_give_the_same_step(name: str) -> None:
    plain, merged = _pair(name)
    x = torch.randn(4, 3, 107, 107, dtype=torch.float64)
    assert torch.allclose(_step(plain, x), _step(merged, x), rtol=1e-10, atol=1e-12)
    _assert_same_step(plain, merged)
    assert all(b.item() == 1 for k, b in merged.named_buffers() if k.endswith("num_batches_tracked"))


@pytest.mark.usefixtures("one_thread")
def test_merged_heads_in_float32_channels_last() -> None:
    plain, merged = (m.float().to(memory_format=torch.channels_last) for m in _pair("inception_v4"))
    x = torch.randn(4, 3, 107, 107).contiguous(memory_format=torch.channels_last)
    assert torch.allclose(_step(plain, x), _step(merged, x), rtol=1e-3, atol=1e-4)


def test_merging_is_a_transform_that_keeps_the_keys_the_parameters_and_the_eval_forward() -> None:
    plain, merged = _pair("inception_v4")
    assert type(plain) is type(merged) and list(plain.state_dict()) == list(merged.state_dict())
    assert [n for n, _ in plain.named_modules()] == [n for n, _ in merged.named_modules()]
    blocks = _merged_blocks(merged)
    assert len(blocks) == 1 + 4 + 7 + 1 + 3  # stem (Mixed_4a), A, B, Reduction-B, C
    assert all(isinstance(b, figure_class(b)) for b in blocks)
    params = list(merged.parameters())
    assert merge_heads(merged) is merged and list(merged.parameters()) == params  # idempotent, same tensors
    assert type(pickle.loads(pickle.dumps(merged)).blocks_a[0]) is type(blocks[1])  # torch.save(model) works
    x = torch.randn(2, 3, 75, 75, dtype=torch.float64)
    with torch.no_grad():  # eval mode runs the figure forwards
        assert torch.equal(plain.eval()(x), merged.eval()(x))
    assert merge_heads(merged, False) is merged and not _merged_blocks(merged)
    assert [type(m) for m in merged.modules()] == [type(m) for m in plain.modules()]


def test_figure_classes_have_one_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    # A network never merged trains through its figure forwards only: the merged computation is not reachable
    # from them. Every planned block class occurs in these three networks.
    torch.manual_seed(0)
    names = ("inception_v3", "inception_v4", "inception_resnet_v2")
    nets = [create_model(n, width=0.125, num_classes=5).double() for n in names]
    assert {figure_class(m) for net in nets for m in net.modules()} >= set(HEAD_PLANS)

    def refuse(*args: object) -> None:
        raise AssertionError("a figure class merged its heads")

    monkeypatch.setattr(merged_module, "merged_heads", refuse)
    x = torch.randn(4, 3, 75, 75, dtype=torch.float64)
    for net in nets:
        _step(net, x)
    with pytest.raises(AssertionError, match="merged its heads"):
        _step(merge_heads(nets[0]), x)


def test_unmerged_blocks_train_as_the_plain_network() -> None:
    plain, merged = _pair("inception_resnet_v2")
    merge_heads(merged, False)
    x = torch.randn(2, 3, 75, 75, dtype=torch.float64)
    assert torch.equal(_step(plain, x), _step(merged, x))
    for (key, a), b in zip(plain.named_parameters(), merged.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad), key


@pytest.mark.usefixtures("one_thread")
def test_merging_with_checkpointing_and_unmergeable_batchnorm() -> None:
    plain, merged = _pair("inception_resnet_v2", aux_logits=True)
    merged.set_grad_checkpointing()
    for model in (plain, merged):  # a cumulative average (momentum None) runs that block's heads one by one
        model.blocks_a[0].branch0.bn.momentum = None
    x = torch.randn(4, 3, 75, 75, dtype=torch.float64)
    _step(plain, x)
    _step(merged, x)
    # The recomputation under checkpointing leaves the statistics alone; the aux head gets no gradient.
    _assert_same_step(plain, merged)


def test_fusion_and_features_of_a_merged_network() -> None:
    merged = _pair("inception_v4")[1].float()
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        expected = merged.eval()(x)
        assert torch.allclose(fuse_for_inference(merged)(x), expected, rtol=1e-4, atol=1e-4)
    features = create_model("inception_v4", width=0.25, features_only=True)
    features.train()
    assert [f.shape[1] for f in features(x)] == features.channels


@pytest.mark.usefixtures("one_thread")
def test_training_loop_with_merged_heads_trains_the_same_weights(
    make_image_folder, make_train_config, tmp_path, monkeypatch
) -> None:
    data = make_image_folder(tmp_path / "data")
    results = []
    for merge in (False, True):
        if not merge:  # the same run with the learner's transform left out
            monkeypatch.setattr(learner, "merge_heads", lambda model: model)
        else:
            monkeypatch.undo()
        torch.manual_seed(0)
        net = create_model("inception_v3", width=0.125, num_classes=2, aux_logits=True)
        # One epoch of two steps, batches of 8 at 139 px. This tiny network amplifies rounding chaotically
        # (BatchNorm over a few nearly constant values): beyond two steps the run with the heads one by one
        # on 1 thread differs from itself on 2 threads as much as from the merged run.
        cfg = make_train_config(data, tmp_path / f"run-{merge}", input_size=139, batch_size=8, epochs=1)
        results.append(train(cfg, model=net))
    plain, merged = results
    assert plain.step == merged.step == 2 and _merged_blocks(merged.model) and not _merged_blocks(plain.model)
    for (key, a), b in zip(plain.model.state_dict().items(), merged.model.state_dict().values(), strict=True):
        assert torch.allclose(a.double(), b.double(), rtol=1e-3, atol=1e-4), key


@pytest.mark.slow
def test_compiled_training_step_with_merged_heads() -> None:
    # torch.compile (inductor) traces the merged forward and its in-place statistics updates; minutes on 2 cores.
    plain, merged = _pair("inception_resnet_v1")
    x = torch.randn(4, 3, 75, 75, dtype=torch.float64)
    compiled = torch.compile(merged)
    assert torch.allclose(_step(plain, x), _step(compiled, x), rtol=1e-10, atol=1e-12)
    _assert_same_step(plain, merged)
