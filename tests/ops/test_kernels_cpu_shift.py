"""The DeepShift-PS weight's CPU kernels (fairseq_shiftadd.ops.kernels.cpu_shift) against the reference path of
clamped_ps_weight (clamp_ps_, then tensor operations): the same values and gradients bit for bit, the same in-place
clamping."""
import math

import pytest
import torch

from _kernel_paths import on_both_paths
from fairseq_shiftadd.ops.kernels import cpu_shift
from fairseq_shiftadd.ops.shift import PSWeight, ShiftLinear, clamped_ps_weight


@pytest.fixture
def kernels_built():
    if not cpu_shift.ps_supported(torch.zeros(1), torch.zeros(1)):
        pytest.skip("the CPU kernels did not build here (no g++?): only the reference path runs")


def _parameters(dtype, bits):
    """Exponents and signs spread well past their ranges, half-way values (round half to even) and a NaN included."""
    torch.manual_seed(0)
    low = -(2 ** (bits - 1) - 2)
    exponent = torch.cat([torch.randn(997, dtype=dtype) * 2 * abs(low), torch.arange(low - 2, 3, 0.5, dtype=dtype)])
    sign = torch.cat([torch.randn(997, dtype=dtype) * 2, torch.linspace(-1.5, 1.5, exponent.numel() - 997,
                                                                          dtype=dtype)])
    exponent[5], sign[7] = math.nan, math.nan
    return exponent, sign


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bits", [5, 3, 8])
def test_kernel_equals_reference_bit_for_bit(kernels_built, monkeypatch, dtype, bits):
    grad = torch.randn(997 + len(torch.arange(-(2 ** (bits - 1) - 2) - 2, 3, 0.5)), dtype=dtype)
    calls = []
    monkeypatch.setattr(cpu_shift, "clamped_ps_weight_",
                        lambda *args, run=cpu_shift.clamped_ps_weight_: calls.append(1) or run(*args))

    def run():
        exponent, sign = (torch.nn.Parameter(t) for t in _parameters(dtype, bits))
        weight = clamped_ps_weight(exponent, sign, bits)
        weight.backward(grad)
        return weight.detach(), exponent.detach(), sign.detach(), exponent.grad, sign.grad

    fast, slow = on_both_paths(monkeypatch, run)
    assert calls == [1]  # the fast run took the kernel, the reference run did not
    for a, b in zip(fast, slow):  # weight, the clamped parameters, both gradients; NaN where the reference has NaN
        assert a.dtype == dtype and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.signbit(), b.signbit())  # -0.0 where it is -0.0
    weight, exponent, sign = fast[:3]
    assert exponent[5].isnan() and weight[5].isnan() and weight[7].isnan()  # a diverged parameter stays visible


def test_layers_read_it_and_their_versions_move(kernels_built):
    layer, slot = ShiftLinear(6, 4), PSWeight((4, 6), torch.nn.init.normal_)
    for module in (layer, slot):
        with torch.no_grad():
            module.exponent.fill_(-40.0)
        version = module.exponent._version
        weight = layer._forward_weight() if module is layer else slot.weight
        assert module.exponent._version > version  # clamped in place, as clamp_ would have said
        assert float(module.exponent.detach().min()) == -14 and float(weight.detach().abs().max()) == 2.0**-14
    with torch.no_grad():
        cached = layer.eval()._forward_weight()
        assert layer._forward_weight() is cached  # the inference cache holds across calls: the key follows the clamp


def test_other_tensors_take_the_reference_path(kernels_built):
    exponent, sign = torch.zeros(4, 6), torch.ones(4, 6)
    assert not cpu_shift.ps_supported(exponent.half(), sign.half())
    assert not cpu_shift.ps_supported(exponent.t(), sign.t())  # not contiguous
    assert not cpu_shift.ps_supported(exponent, sign.double())
    assert torch.equal(clamped_ps_weight(exponent.t(), sign.t()), torch.ones(6, 4))
