"""GPTQ rounding of int8 weights (inference.rounding): the unfolded input, the rounding itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inceptionnet.inference.rounding import INT8_MAX, _columns, gptq


def _scale(w: torch.Tensor) -> torch.Tensor:
    return w.abs().amax(1) / INT8_MAX  # symmetric per output row, as the quantizer chooses it


def _output_error(w: torch.Tensor, ints: torch.Tensor, scale: torch.Tensor, x: torch.Tensor) -> float:
    return ((x @ (w - ints * scale[:, None]).T) ** 2).mean().item()


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [((3, 3), 2, (0, 0)), ((1, 7), 1, (0, 3)), ((3, 3), 1, (1, 1))]
)
def test_columns_reproduce_the_convolution(kernel: tuple[int, int], stride: int, padding: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x, w = torch.randn(2, 5, 11, 13, dtype=torch.float64), torch.randn(4, 5, *kernel, dtype=torch.float64)
    geometry = (kernel, (stride, stride), (padding[0], padding[1], padding[0], padding[1]), (1, 1))
    expected = F.conv2d(x, w, stride=stride, padding=padding)  # N, out, H, W
    rows = _columns(x, geometry) @ w.reshape(4, -1).T  # one row per (image, position)
    assert torch.allclose(rows, expected.permute(0, 2, 3, 1).reshape(-1, 4))


def test_columns_take_uneven_padding() -> None:
    x, w = torch.randn(1, 2, 6, 6, dtype=torch.float64), torch.randn(3, 2, 2, 2, dtype=torch.float64)
    rows = _columns(x, ((2, 2), (1, 1), (0, 0, 1, 1), (1, 1)))  # bottom and right only, as TF's "SAME"
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), w)
    assert torch.allclose(rows @ w.reshape(3, -1).T, expected.permute(0, 2, 3, 1).reshape(-1, 3))


def test_with_uncorrelated_unit_inputs_it_is_round_to_nearest() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 20, dtype=torch.float64)
    scale = _scale(w)
    # H = I: no column's error can be compensated by another, so each weight goes to its nearest step
    # (the damping only scales H, which changes nothing)
    ints = gptq(w, torch.eye(20, dtype=torch.float64), scale)
    assert torch.equal(ints, torch.round(w / scale[:, None]))


def test_it_lowers_the_output_error_on_correlated_inputs() -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 48, dtype=torch.float64)
    x = torch.randn(4000, 8, dtype=torch.float64) @ torch.randn(8, 48, dtype=torch.float64)  # rank 8: correlated
    x += 0.05 * torch.randn_like(x)
    scale = _scale(w)
    ints = gptq(w, x.T @ x / len(x), scale)
    nearest = torch.round(w / scale[:, None])
    assert ints.abs().max() <= INT8_MAX and torch.equal(ints, ints.round())
    assert _output_error(w, ints, scale, x) < 0.5 * _output_error(w, nearest, scale, x)


def test_an_input_never_seen_keeps_its_nearest_step() -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 10, dtype=torch.float64)
    x = torch.randn(500, 10, dtype=torch.float64)
    x[:, 3] = 0  # a dead channel on every calibration image
    scale = _scale(w)
    ints = gptq(w, x.T @ x / len(x), scale)
    assert torch.equal(ints[:, 3], torch.round(w[:, 3] / scale))
    assert torch.isfinite(ints).all()
