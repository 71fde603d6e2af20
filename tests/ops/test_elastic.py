"""Tests of the HAT/OFA elastic-layer rules (fairseq_shiftadd.ops.elastic)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from fairseq_shiftadd.ops.elastic import scale_dropout, slice_layer_norm, slice_linear


def test_slice_linear_is_front_slice_view_with_gradient_to_full_weight():
    weight = torch.randn(6, 5, requires_grad=True)
    bias = torch.randn(6, requires_grad=True)
    w, b = slice_linear(weight, bias, out_dim=4, in_dim=3)
    assert torch.equal(w, weight[:4, :3]) and torch.equal(b, bias[:4])
    assert w.data_ptr() == weight.data_ptr()  # a view, no copy
    x = torch.randn(2, 3)
    F.linear(x, w, b).sum().backward()
    expected = torch.zeros(6, 5)
    expected[:4, :3] = x.sum(0)
    assert torch.equal(weight.grad, expected)
    assert torch.equal(bias.grad, torch.tensor([2.0, 2, 2, 2, 0, 0]))


def test_full_slices_are_the_tensors_themselves():
    weight, bias = torch.randn(6, 5, 3), torch.randn(6)
    w, b = slice_linear(weight, bias, out_dim=6, in_dim=5)
    assert w is weight and b is bias  # no SliceBackward copying the gradient into a zero tensor
    assert all(t is bias for t in slice_layer_norm(bias, bias, 6))
    assert slice_linear(weight, bias, out_dim=6, in_dim=4)[1] is bias


def test_slice_linear_matches_a_small_linear_layer():
    big = nn.Linear(8, 10)
    w, b = slice_linear(big.weight, big.bias, out_dim=7, in_dim=5)
    small = nn.Linear(5, 7)
    with torch.no_grad():
        small.weight.copy_(big.weight[:7, :5])
        small.bias.copy_(big.bias[:7])
    x = torch.randn(3, 5)
    assert_close(F.linear(x, w, b), small(x))


def test_slice_linear_without_bias_and_conv_kernel():
    weight = torch.randn(8, 4, 3, 3)
    w, b = slice_linear(weight, None, 5, 2)
    assert b is None and w.shape == (5, 2, 3, 3) and torch.equal(w, weight[:5, :2])
    w, _ = slice_linear(weight, None, 8, 4)  # full size
    assert torch.equal(w, weight)


@pytest.mark.parametrize(
    "out_dim, in_dim, name",
    [(7, 3, "out_dim"), (0, 3, "out_dim"), (2, 6, "in_dim"), (2, -1, "in_dim"), (True, 2, "out_dim"),
     (2, 2.0, "in_dim")],
)
def test_slice_linear_rejects_bad_widths(out_dim, in_dim, name):
    with pytest.raises(ValueError, match=name):
        slice_linear(torch.randn(6, 5), None, out_dim, in_dim)


def test_slice_linear_rejects_bad_tensors():
    with pytest.raises(ValueError, match="weight"):
        slice_linear(torch.randn(6), None, 1, 1)
    with pytest.raises(ValueError, match="bias"):
        slice_linear(torch.randn(6, 5), torch.randn(5), 2, 2)


def test_slice_layer_norm_matches_small_layer_norm():
    big = nn.LayerNorm(8)
    with torch.no_grad():
        big.weight.normal_()
        big.bias.normal_()
    gamma, beta = slice_layer_norm(big.weight, big.bias, 5)
    assert torch.equal(gamma, big.weight[:5]) and torch.equal(beta, big.bias[:5])
    small = nn.LayerNorm(5)
    with torch.no_grad():
        small.weight.copy_(big.weight[:5])
        small.bias.copy_(big.bias[:5])
    x = torch.randn(3, 2, 5)
    assert_close(F.layer_norm(x, (5,), gamma, beta, big.eps), small(x))


def test_slice_layer_norm_none_parameters():
    assert slice_layer_norm(torch.ones(4), None, 2)[1] is None
    gamma, beta = slice_layer_norm(None, torch.arange(4.0), 3)
    assert gamma is None and torch.equal(beta, torch.arange(3.0))


@pytest.mark.parametrize("dim", [0, 5, 2.0, False])
def test_slice_layer_norm_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match="dim"):
        slice_layer_norm(torch.ones(4), torch.zeros(4), dim)


def test_slice_layer_norm_rejects_bad_tensors():
    with pytest.raises(ValueError, match="weight or bias"):
        slice_layer_norm(None, None, 1)
    with pytest.raises(ValueError, match="bias"):
        slice_layer_norm(torch.ones(4), torch.zeros(3), 1)
    with pytest.raises(ValueError, match="weight"):
        slice_layer_norm(torch.ones(4, 1), None, 1)


@pytest.mark.parametrize("p, dim, max_dim, expected", [(0.3, 512, 1024, 0.15), (0.3, 1024, 1024, 0.3),
                                                       (0.1, 768, 1024, 0.075), (0.0, 3, 4, 0.0), (1, 1, 4, 0.25)])
def test_scale_dropout_values(p, dim, max_dim, expected):
    assert math.isclose(scale_dropout(p, dim, max_dim), expected)


@pytest.mark.parametrize(
    "p, dim, max_dim, name",
    [(-0.1, 2, 4, "p"), (1.5, 2, 4, "p"), (float("nan"), 2, 4, "p"), (True, 2, 4, "p"), ("0.1", 2, 4, "p"),
     (0.1, 0, 4, "dim"), (0.1, 5, 4, "dim"), (0.1, 2.0, 4, "dim"), (0.1, 1, 0, "max_dim"), (0.1, 1, 4.0, "max_dim")],
)
def test_scale_dropout_rejects_bad_arguments(p, dim, max_dim, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        scale_dropout(p, dim, max_dim)
