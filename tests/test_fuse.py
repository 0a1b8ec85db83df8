"""The fused inference network computes what the plain network computes, for every network of the package."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inceptionnet import create_model, list_models
from inceptionnet.inference.fuse import ConvReLU, MergedHeads, fuse_for_inference, is_fused
from inceptionnet.models.checkpointing import CheckpointedSequential, disable_checkpointing, enable_checkpointing
from inceptionnet.models.layers import ConvBN


def randomize_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that folding them is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


CASES = [(name, {}) for name in list_models()] + [("inception_v3", {"count_include_pad": True})]


@pytest.mark.parametrize(("name", "options"), CASES, ids=[n + ("-pad" if o else "") for n, o in CASES])
def test_fused_matches_plain(name: str, options: dict) -> None:
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, width=0.25, **options)).eval()
    fused = fuse_for_inference(model)
    x = torch.randn(1, 3, 91, 91)
    with torch.no_grad():
        logits, feats = model(x), model.forward_features(x)
        assert rel_err(logits, fused(x)) < 1e-4
        fused_feats = fused.forward_features(x)
        assert rel_err(feats, fused_feats) < 1e-4
        assert (
            rel_err(model.forward_head(feats, pre_logits=True), fused.forward_head(fused_feats, pre_logits=True)) < 1e-4
        )
    # Nothing of the plain conv unit is left, and every block merged its 1x1 heads.
    assert is_fused(fused)
    assert not any(isinstance(m, ConvBN | nn.BatchNorm2d) for m in fused.modules())
    n_blocks = sum(len(getattr(model, s)) for s in ("blocks_a", "blocks_b", "blocks_c"))
    assert sum(isinstance(m, MergedHeads) for m in fused.modules()) >= n_blocks + 1  # + Reduction-B


def test_fused_in_channels_last_matches_plain() -> None:
    torch.manual_seed(0)
    model = randomize_bn(create_model("inception_resnet_v2", width=0.25)).eval()
    fused = fuse_for_inference(model).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        assert rel_err(model(x), fused(x.contiguous(memory_format=torch.channels_last))) < 1e-4


def test_merged_heads_of_inception_a() -> None:
    # Inception-A at width 1: branch0 96 | branch1 64 | branch2 64 | pool branch 96, in that order.
    fused = fuse_for_inference(create_model("inception_v4", width=1.0).blocks_a[0])
    assert fused.heads.sizes == [96, 64, 64, 96]
    assert fused.heads.relu_channels == 96 + 64 + 64  # the pool branch's ReLU comes after its pool
    assert fused.heads.conv.in_channels == 384


@pytest.mark.slow
def test_full_width_inception_v4_at_299() -> None:
    torch.manual_seed(0)
    model = randomize_bn(create_model("inception_v4")).eval()
    fused = fuse_for_inference(model)
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        assert rel_err(model(x), fused(x)) < 1e-4


def test_original_untouched_and_training_refused() -> None:
    model = create_model("inception_v4", width=0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert model.training  # the argument keeps its mode and its modules
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, ConvBN) for m in model.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    fused.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        fused(torch.randn(1, 3, 75, 75))
    assert isinstance(fused.stem.conv1a, ConvReLU)


class _TwoBlocks(nn.Module):
    """Two Inception-ResNet-A blocks as a `blocks_a` stage: enough to test checkpointing, cheap to train."""

    def __init__(self) -> None:
        super().__init__()
        net = create_model("inception_resnet_v2", width=0.25)
        self.blocks_a = nn.Sequential(*list(net.blocks_a)[:2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks_a(x)


def _train_step(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_checkpointing_gives_the_same_step() -> None:
    torch.manual_seed(0)
    plain, ckpt = _TwoBlocks(), _TwoBlocks()
    ckpt.load_state_dict(plain.state_dict())
    enable_checkpointing(ckpt, stages=("blocks_a",))
    assert isinstance(ckpt.blocks_a, CheckpointedSequential)
    assert list(ckpt.state_dict()) == list(plain.state_dict())  # keys are an API: unchanged
    x = torch.randn(2, plain.blocks_a[0].up.conv.out_channels, 9, 9)
    g_plain, g_ckpt = _train_step(plain, x), _train_step(ckpt, x)
    for name, g in g_plain.items():
        assert torch.allclose(g, g_ckpt[name], rtol=1e-4, atol=1e-6), name
    # BN running statistics move once per step, as without checkpointing (no double update on recompute).
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers(), strict=True):
        assert torch.equal(a, b), name
    disable_checkpointing(ckpt)
    assert type(ckpt.blocks_a) is nn.Sequential


def test_checkpointing_covers_every_stage() -> None:
    model = enable_checkpointing(create_model("inception_v4", width=0.25))
    assert all(isinstance(getattr(model, s), CheckpointedSequential) for s in ("blocks_a", "blocks_b", "blocks_c"))


def test_checkpointing_names_missing_stage() -> None:
    with pytest.raises(ValueError, match="no block stage 'blocks_x'"):
        enable_checkpointing(create_model("inception_v3", width=0.25), stages=("blocks_x",))


@pytest.mark.slow
def test_compiled_fused_matches_plain() -> None:
    # torch.compile (inductor) needs a C++ compiler and minutes on 2 cores: slow-marked.
    torch.manual_seed(0)
    model = randomize_bn(create_model("inception_v3", width=0.25)).eval()
    compiled = torch.compile(fuse_for_inference(model))
    x = torch.randn(1, 3, 91, 91)
    with torch.no_grad():
        assert rel_err(model(x), compiled(x)) < 1e-4
