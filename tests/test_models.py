"""The networks against the numbers of the paper and the released code (paper-spec sections 2-9)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from inceptionnet import create_model, list_models
from inceptionnet.models import Preprocessing, get_entry
from inceptionnet.models.inception_resnet import IR_V2_PAPER, IR_V2_RELEASED
from inceptionnet.models.inception_v4 import InceptionV4
from inceptionnet.models.residual_blocks import InceptionResNetA
from inceptionnet.models.summary import count_macs, summarize

ALL = ["inception_v3", "inception_v4", "inception_resnet_v1", "inception_resnet_v2", "inception_resnet_v2_paper"]

# Stage outputs (H, W, C) at 299, from paper-spec sections 2, 3.1, 4.1, 5.1 and 5.2.
STAGES_299 = {
    "inception_v4": {
        "stem": (35, 35, 384),
        "blocks_a": (35, 35, 384),
        "reduction_a": (17, 17, 1024),
        "blocks_b": (17, 17, 1024),
        "reduction_b": (8, 8, 1536),
        "blocks_c": (8, 8, 1536),
    },
    "inception_resnet_v1": {
        "stem": (35, 35, 256),
        "blocks_a": (35, 35, 256),
        "reduction_a": (17, 17, 896),
        "blocks_b": (17, 17, 896),
        "reduction_b": (8, 8, 1792),
        "blocks_c": (8, 8, 1792),
    },
    "inception_resnet_v2_paper": {
        "stem": (35, 35, 384),
        "blocks_a": (35, 35, 384),
        "reduction_a": (17, 17, 1152),
        "blocks_b": (17, 17, 1152),
        "reduction_b": (8, 8, 2144),
        "blocks_c": (8, 8, 2144),
    },
    "inception_resnet_v2": {
        "stem": (35, 35, 320),
        "blocks_a": (35, 35, 320),
        "reduction_a": (17, 17, 1088),
        "blocks_b": (17, 17, 1088),
        "reduction_b": (8, 8, 2080),
        "blocks_c": (8, 8, 2080),
        "conv_7b": (8, 8, 1536),
    },
    "inception_v3": {
        "stem": (35, 35, 192),
        "blocks_a": (35, 35, 288),
        "reduction_a": (17, 17, 768),
        "blocks_b": (17, 17, 768),
        "reduction_b": (8, 8, 1280),
        "blocks_c": (8, 8, 2048),
    },
}

# Grid sides of the 35x35, 17x17 and 8x8 stages, by hand from the valid-padded reductions:
# s -> (s-3)//2+1 -> -2 -> pool (s-3)//2+1 -> -2 (or 3x3 V) -> (s-3)//2+1 -> (s-3)//2+1 -> (s-3)//2+1.
GRIDS = {299: (35, 17, 8), 331: (39, 19, 9), 75: (7, 3, 1), 76: (7, 3, 1), 91: (9, 4, 1)}
GRID_OF_STAGE = {
    "stem": 0,
    "blocks_a": 0,
    "reduction_a": 1,
    "blocks_b": 1,
    "reduction_b": 2,
    "blocks_c": 2,
    "conv_7b": 2,
}

# Parameters at 1000 classes without the auxiliary head: timm's counts for the released networks
# (paper-spec section 9); counted layer by layer for the paper-only networks (sections 4.2, 5.1).
PARAMS = {
    "inception_v3": 23_834_568,
    "inception_v4": 42_679_816,
    "inception_resnet_v2": 55_843_464,
    "inception_resnet_v1": 22_756_328,
    "inception_resnet_v2_paper": 32_433_928,
}
PARAMS_WITH_AUX = {"inception_v3": 27_161_264, "inception_v4": 46_039_280, "inception_resnet_v2": 59_211_120}
# Multiply-adds per 299x299 image, GMACs (paper-spec [CALC] values, sections 2-5).
GMACS = {
    "inception_v3": 5.71,
    "inception_v4": 12.25,
    "inception_resnet_v2": 13.16,
    "inception_resnet_v1": 6.21,
    "inception_resnet_v2_paper": 9.26,
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_list_models() -> None:
    assert list_models() == sorted(ALL)
    with pytest.raises(ValueError, match="unknown model 'inception_v5'"):
        create_model("inception_v5")


@pytest.mark.parametrize("name", ALL)
def test_parameter_counts(name: str) -> None:
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(PARAMS_WITH_AUX))
def test_parameter_counts_with_aux_head(name: str) -> None:
    model = create_model(name, aux_logits=True)
    assert sum(p.numel() for p in model.parameters()) == PARAMS_WITH_AUX[name]


@pytest.mark.parametrize("name", ALL)
def test_stage_shapes_and_macs_at_299(name: str) -> None:
    s = summarize(create_model(name), input_size=299)
    shapes = {row.name: row.shape for row in s.stages if row.name != "head"}
    assert shapes == STAGES_299[name]
    assert round(s.macs / 1e9, 2) == GMACS[name]
    assert s.params == PARAMS[name]


@pytest.mark.parametrize("size", [331, 91, 76, 75])
@pytest.mark.parametrize("name", ALL)
def test_stage_shapes_at_other_sizes(name: str, size: int) -> None:
    model = create_model(name, width=0.25)
    s = summarize(model, input_size=size)
    for row in s.stages:
        if row.name == "head":
            continue
        side = GRIDS[size][GRID_OF_STAGE[row.name]]
        assert row.shape[:2] == (side, side), row
    assert s.stages[-1].shape == (1, 1, 1000)


@pytest.mark.parametrize("name", ALL)
def test_input_below_minimum_is_rejected_before_any_convolution(name: str) -> None:
    model = create_model(name, width=0.25).eval()
    ran: list[str] = []
    for mod_name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda *_, n=mod_name: ran.append(n))
    with pytest.raises(ValueError, match=rf"input 74x80 is smaller than the 75x75 minimum of {name}"):
        model(torch.zeros(1, 3, 74, 80))
    with pytest.raises(ValueError, match="75x75 minimum"):
        model.forward_features(torch.zeros(1, 3, 80, 60))
    assert ran == []
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 75, 75)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_minimum_is_tight(name: str) -> None:
    """Without the check, 74x74 fails inside the network: 75 really is the smallest size."""
    model = create_model(name, width=0.25).eval()
    model.min_input_size = 1
    with pytest.raises(RuntimeError), torch.no_grad():
        model(torch.zeros(1, 3, 74, 74))


def test_wrong_channel_count_is_explained() -> None:
    model = create_model("inception_v4", width=0.25)
    with pytest.raises(ValueError, match="built for 3-channel input, got 1 channels; build it with in_chans=1"):
        model(torch.zeros(1, 1, 99, 99))


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    aux = name in PARAMS_WITH_AUX
    model = create_model(name, width=0.25, aux_logits=aux, num_classes=10).train()
    out = model(torch.randn(2, 3, 107, 107), return_aux=aux)
    loss = out[0].square().mean() + out[1].square().mean() if aux else out.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert len(zero) <= 0.02 * len(list(model.parameters())), zero


@pytest.mark.parametrize("name", ALL)
def test_eval_output_is_deterministic_and_seeded(name: str) -> None:
    x = torch.randn(2, 3, 91, 91)
    torch.manual_seed(1)
    a = create_model(name, width=0.25).eval()
    torch.manual_seed(1)
    b = create_model(name, width=0.25).eval()
    with torch.no_grad():
        ya, ya2, yb = a(x), a(x), b(x)
    assert torch.equal(ya, ya2)
    assert torch.equal(ya, yb)


@pytest.mark.parametrize("name", ALL)
def test_in_chans_and_num_classes(name: str) -> None:
    model = create_model(name, in_chans=1, num_classes=10, width=0.25).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 99, 99)).shape == (3, 10)
        feats = model.forward_features(torch.randn(1, 1, 99, 99))
        assert model.forward_head(feats, pre_logits=True).shape == (1, model.num_features)
    headless = create_model(name, num_classes=0, width=0.25).eval()
    with torch.no_grad():
        assert headless(torch.randn(1, 3, 99, 99)).shape == (1, headless.num_features)


def test_reset_classifier() -> None:
    model = create_model("inception_v3", width=0.25, aux_logits=True)
    model.reset_classifier(7)
    logits, aux = model(torch.randn(2, 3, 99, 99), return_aux=True)
    assert logits.shape == aux.shape == (2, 7)


@pytest.mark.parametrize("name", ["inception_v3", "inception_resnet_v2"])
def test_build_options_rebuild_the_same_network(name: str) -> None:
    options = {"width": 0.25, "num_classes": 5, "drop_rate": 0.1}
    if name.startswith("inception_resnet"):
        options["scales"] = (0.3, 0.2, 0.1)
    else:
        options["count_include_pad"] = True
    torch.manual_seed(0)
    model = create_model(name, **options).eval()
    assert model.build_options.items() >= options.items()  # every option, defaults included
    assert model.weights_name is None and model.preprocessing == get_entry(name).preprocessing
    torch.manual_seed(0)
    again = create_model(model.model_name, **model.build_options).eval()
    x = torch.randn(2, 3, 91, 91)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    model.reset_classifier(3)
    assert model.build_options["num_classes"] == 3


def test_networks_built_by_class_declare_their_attributes() -> None:
    model = InceptionV4(width=0.25, preprocessing=Preprocessing(input_size=107))
    assert model.preprocessing.input_size == 107 and model.weights_name is None
    assert model.build_options == {
        "num_classes": 1000,
        "in_chans": 3,
        "drop_rate": 0.2,
        "aux_logits": False,
        "width": 0.25,
    }
    assert InceptionV4(width=0.25).preprocessing == Preprocessing()


def _train_step(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_grad_checkpointing_is_a_flag_that_gives_the_same_step() -> None:
    torch.manual_seed(0)
    plain = create_model("inception_resnet_v2", width=0.125, num_classes=4, drop_rate=0.0)  # no random masks
    ckpt = create_model("inception_resnet_v2", width=0.125, num_classes=4, drop_rate=0.0)
    ckpt.load_state_dict(plain.state_dict())
    assert not ckpt.grad_checkpointing
    ckpt.set_grad_checkpointing()
    assert ckpt.grad_checkpointing and all(s.grad_checkpointing for s in (ckpt.blocks_a, ckpt.blocks_b, ckpt.blocks_c))
    assert type(ckpt) is type(plain) and type(ckpt.blocks_a) is type(plain.blocks_a)  # a flag, not a class swap
    assert list(ckpt.state_dict()) == list(plain.state_dict())  # keys are an API: unchanged
    x = torch.randn(2, 3, 75, 75)
    g_plain, g_ckpt = _train_step(plain, x), _train_step(ckpt, x)
    for name, g in g_plain.items():
        assert torch.allclose(g, g_ckpt[name], rtol=1e-4, atol=1e-6), name
    # BN running statistics move once per step, as without checkpointing (no double update on recompute).
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers(), strict=True):
        assert torch.equal(a, b), name
    ckpt.set_grad_checkpointing(False)
    assert not ckpt.grad_checkpointing


def test_grad_checkpointing_needs_no_flag_in_eval() -> None:
    model = create_model("inception_v4", width=0.125).eval()
    model.set_grad_checkpointing()
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        out = model(x)
    model.set_grad_checkpointing(False)
    with torch.no_grad():
        assert torch.equal(out, model(x))


def test_count_macs_is_the_summary_counter() -> None:
    model = create_model("inception_v3", width=0.25)
    assert count_macs(model, input_size=107) == summarize(model, input_size=107).macs
    with torch.device("meta"):
        meta = create_model("inception_v3", width=0.25)
    assert count_macs(meta, input_size=107) == summarize(model, input_size=107).macs


@pytest.mark.parametrize("name", sorted(PARAMS_WITH_AUX))
def test_aux_head_only_on_request(name: str) -> None:
    model = create_model(name, width=0.25, aux_logits=True, num_classes=5).eval()
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        plain = model(x)
        logits, aux = model(x, return_aux=True)
    assert isinstance(plain, torch.Tensor) and plain.shape == (2, 5)
    assert torch.equal(plain, logits)
    assert aux.shape == (2, 5)
    with torch.no_grad():  # below 299 the 17x17 grid is pooled adaptively
        assert model(torch.randn(1, 3, 75, 75), return_aux=True)[1].shape == (1, 5)


def test_aux_head_errors() -> None:
    with pytest.raises(ValueError, match="has no auxiliary head; build it with aux_logits=True"):
        create_model("inception_v4", width=0.25)(torch.randn(1, 3, 99, 99), return_aux=True)
    for name in ("inception_resnet_v1", "inception_resnet_v2_paper"):
        with pytest.raises(ValueError, match="describes none"):
            create_model(name, aux_logits=True)


def test_residual_scales() -> None:
    default = create_model("inception_resnet_v2", width=0.25)
    scales = [(b.up.scale, type(b.act).__name__) for b in default.blocks_c]
    assert scales == [(0.2, "ReLU")] * 9 + [(1.0, "Identity")]  # released: last block linear, unscaled
    assert {b.up.scale for b in default.blocks_a} == {0.17}
    assert {b.up.scale for b in default.blocks_b} == {0.10}
    paper = create_model("inception_resnet_v2_paper", width=0.25)
    assert [(b.up.scale, type(b.act).__name__) for b in paper.blocks_c] == [(0.2, "ReLU")] * 5
    unscaled = create_model("inception_resnet_v1", width=0.25, scales=(1.0, 1.0, 1.0))
    assert {b.up.scale for stage in (unscaled.blocks_a, unscaled.blocks_b, unscaled.blocks_c) for b in stage} == {1.0}

    torch.manual_seed(3)
    a = create_model("inception_resnet_v1", width=0.25).eval()
    torch.manual_seed(3)
    b = create_model("inception_resnet_v1", width=0.25, scales=(0.3, 0.3, 0.3)).eval()
    x = torch.randn(1, 3, 99, 99)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


def test_residual_block_arithmetic() -> None:
    """out = ReLU(x + scale * up(branches)): scale 0 leaves ReLU(x); scale s scales the residual."""
    block = InceptionResNetA(16, branch0=4, branch1=(4, 4), branch2=(4, 6, 8), scale=0.0).eval()
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))
        block.up.scale = 0.25
        branches = torch.cat([block.branch0(x), block.branch1(x), block.branch2(x)], 1)
        expected = torch.relu(x + 0.25 * block.up.conv(branches))
        assert torch.allclose(block(x), expected, atol=1e-6)


def test_released_last_block_has_no_relu() -> None:
    model = create_model("inception_resnet_v2", width=0.25).eval()
    out: list[torch.Tensor] = []
    model.blocks_c.register_forward_hook(lambda _m, _i, o: out.append(o))
    with torch.no_grad():
        model(torch.randn(1, 3, 99, 99))
    assert (out[0] < 0).any()  # an unactivated sum


def test_width_multiplier() -> None:
    half = summarize(create_model("inception_v4", width=0.5), input_size=299)
    shapes = {row.name: row.shape for row in half.stages}
    assert shapes["stem"] == (35, 35, 192)
    assert shapes["reduction_a"] == (17, 17, 512)
    assert shapes["blocks_c"] == (8, 8, 768)
    assert 0.2 < half.params / PARAMS["inception_v4"] < 0.3  # about width^2


def test_v3_average_pool_padding_option() -> None:
    x = torch.randn(1, 3, 99, 99)
    torch.manual_seed(5)
    tf = create_model("inception_v3", width=0.25).eval()
    torch.manual_seed(5)
    tv = create_model("inception_v3", width=0.25, count_include_pad=True).eval()
    with torch.no_grad():
        assert not torch.allclose(tf(x), tv(x))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("inception_v4", [(147, 64), (73, 160), (35, 384), (17, 1024), (8, 1536)]),
        ("inception_v3", [(147, 64), (71, 192), (35, 288), (17, 768), (8, 2048)]),
        ("inception_resnet_v1", [(147, 64), (71, 192), (35, 256), (17, 896), (8, 1792)]),
        ("inception_resnet_v2", [(147, 64), (71, 192), (35, 320), (17, 1088), (8, 1536)]),
        ("inception_resnet_v2_paper", [(147, 64), (73, 160), (35, 384), (17, 1152), (8, 2144)]),
    ],
)
def test_features_only(name: str, expected: list[tuple[int, int]]) -> None:
    full = create_model(name)
    assert [(f.stride, f.channels) for f in full.feature_info] == [
        (s, c) for s, (_side, c) in zip((2, 4, 8, 16, 32), expected, strict=True)
    ]
    backbone = create_model(name, features_only=True, width=0.25).eval()
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 299, 299))
    assert [(m.shape[-1], m.shape[1]) for m in maps] == [(side, round(c / 4)) for side, c in expected]
    assert backbone.channels == [m.shape[1] for m in maps]
    picked = create_model(name, features_only=True, out_indices=(2, 4), width=0.25).eval()
    with torch.no_grad():
        two = picked(torch.randn(1, 3, 123, 131))
    assert [m.shape[1] for m in two] == [backbone.channels[2], backbone.channels[4]]
    with pytest.raises(ValueError, match="minimum"):
        picked(torch.randn(1, 3, 60, 60))
    with pytest.raises(ValueError, match="out_indices"):
        create_model(name, features_only=True, out_indices=(5,), width=0.25)


def test_state_dict_keys_are_stable() -> None:
    """Module names are an API (checkpoints and the published-weight key table depend on them)."""
    v4 = create_model("inception_v4").state_dict()
    for key in (
        "stem.conv1a.conv.weight",
        "stem.mixed_3a_conv.bn.running_mean",
        "stem.mixed_4a_branch1.3.conv.weight",
        "blocks_a.3.branch3.1.conv.weight",
        "reduction_a.branch1.2.bn.bias",
        "blocks_b.6.branch2.4.conv.weight",
        "blocks_c.2.branch2_3x1.conv.weight",
        "head.fc.weight",
    ):
        assert key in v4
    assert len(v4) == 896  # as many tensors as the published checkpoint
    ir2 = create_model("inception_resnet_v2", aux_logits=True).state_dict()
    for key in (
        "stem.mixed_5b.branch3.1.conv.weight",
        "blocks_a.9.up.conv.bias",
        "blocks_b.19.branch1.2.conv.weight",
        "reduction_b.branch2.2.bn.running_var",
        "blocks_c.9.up.conv.weight",
        "conv_7b.conv.weight",
        "aux.conv1.conv.weight",
        "aux.fc.bias",
    ):
        assert key in ir2
    assert len(ir2) == 1306 + 14  # the published checkpoint has no auxiliary head (14 tensors)


def test_paper_and_released_ir_v2_differ_only_where_documented() -> None:
    diff = {
        f.name
        for f in dataclasses.fields(IR_V2_PAPER)
        if getattr(IR_V2_PAPER, f.name) != getattr(IR_V2_RELEASED, f.name)
    }
    assert diff == {"name", "stem", "depths", "last_block_linear", "final_conv", "has_aux"}
