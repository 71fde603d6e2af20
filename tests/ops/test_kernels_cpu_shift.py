"""The shift layers' CPU kernels (fairseq_shiftadd.ops.kernels.cpu_shift).

The DeepShift-PS weight against the reference path of clamped_ps_weight (clamp_ps_, then tensor operations): the
same values and gradients bit for bit, the same in-place clamping. DeepShift-Q's rounding against the reference path
of round_pow2_ste (frexp and tensor operations): the same values bit for bit. The packed linear layer against F.linear
with the float weight: every code decodes exactly, the same outputs to rounding, at inference only."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from _kernel_paths import on_both_paths
from fairseq_shiftadd.ops.kernels import cpu_shift
from fairseq_shiftadd.ops.shift import PSWeight, ShiftLinear, clamped_ps_weight, round_pow2_ste


@pytest.fixture
def kernels_built():
    if not cpu_shift.elementwise_supported(torch.zeros(1), torch.zeros(1)):
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bits", [2, 5, 8])
def test_round_pow2_kernel_equals_reference_bit_for_bit(kernels_built, monkeypatch, dtype, bits):
    torch.manual_seed(0)
    scales = torch.exp2(torch.empty(3000, dtype=torch.float64).uniform_(-140, 4)).to(dtype)  # subnormals to 16
    tiny = torch.finfo(dtype).tiny
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, tiny, -tiny / 2, 1.0, -1.0], dtype=dtype)
    w = torch.cat([torch.randn(3000, dtype=dtype) * scales, special])
    w = torch.cat([w, torch.nextafter(w, w * 2), torch.nextafter(w, w / 2)])  # each value's neighbours too
    calls = []
    monkeypatch.setattr(cpu_shift, "round_pow2", lambda *args, run=cpu_shift.round_pow2: calls.append(1) or run(*args))
    w = torch.nn.Parameter(w)
    fast, slow = on_both_paths(monkeypatch, lambda: [round_pow2_ste(w, bits).detach()])
    assert calls == [1]
    assert fast[0].dtype == dtype and torch.equal(fast[0].isnan(), slow[0].isnan()) and bool(fast[0].isnan().any())
    assert torch.equal(fast[0].nan_to_num(7.0), slow[0].nan_to_num(7.0))
    assert torch.equal(fast[0].signbit(), slow[0].signbit())


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
    assert not cpu_shift.elementwise_supported(exponent.half(), sign.half())
    assert not cpu_shift.elementwise_supported(exponent.t(), sign.t())  # not contiguous
    assert not cpu_shift.elementwise_supported(exponent, sign.double())
    assert torch.equal(clamped_ps_weight(exponent.t(), sign.t()), torch.ones(6, 4))


def _pow2_weight(rows, cols, dtype, seed=0):
    """Signed powers of two 2**p, p in [-14, 0], and zeros."""
    generator = torch.Generator().manual_seed(seed)
    exponent = torch.randint(-14, 1, (rows, cols), generator=generator).to(dtype)
    return torch.randint(-1, 2, (rows, cols), generator=generator).to(dtype) * exponent.exp2()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_every_code_decodes_exactly(kernels_built, dtype):
    powers = torch.arange(-126, 1, dtype=torch.float64).exp2()
    weight = torch.cat([powers, -powers, torch.tensor([0.0, -0.0], dtype=torch.float64)]).to(dtype).view(-1, 1)
    codes = cpu_shift.pow2_codes(weight)
    assert codes.dtype == torch.int8 and codes.shape == (-(-weight.size(0) // 64), 1, 64)
    assert len(codes.unique()) == weight.size(0) - 1  # one code per value, one for both zeros (and the padding)
    # x = 1: each output is one product, exact
    assert torch.equal(cpu_shift.pow2_linear(torch.ones(1, 1, dtype=dtype), codes, None, weight.size(0)), weight.t())


@pytest.mark.parametrize("value", [0.3, 2.0, 2.0**-127, 1 + 2.0**-20, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_codes_decline_anything_but_signed_powers_of_two(value, dtype):
    weight = _pow2_weight(4, 6, dtype)
    weight[2, 3] = value
    assert cpu_shift.pow2_codes(weight) is None


def test_codes_decline_other_layouts():
    weight = _pow2_weight(4, 6, torch.float32)
    assert cpu_shift.pow2_codes(weight.half()) is None
    assert cpu_shift.pow2_codes(weight.view(2, 2, 6)) is None
    assert cpu_shift.pow2_codes(torch.tensor([2.0**-131], dtype=torch.float64).view(1, 1)) is None  # below float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("rows", [1, 5, 6, 7, 8, 13, 32])
@pytest.mark.parametrize("out_features, in_features", [(1, 1), (17, 3), (64, 64), (130, 37)])
def test_packed_linear_equals_float_linear(kernels_built, dtype, rows, out_features, in_features):
    """Ragged panels (M not a multiple of 16 or 64), row blocks of every size, a strided x, the front block of a
    larger weight's codes (as the supernet's slots slice theirs), with and without bias."""
    weight = _pow2_weight(out_features + 3, in_features + 2, dtype)
    codes = cpu_shift.pow2_codes(weight)
    weight = weight[:out_features, :in_features]
    x = torch.randn(rows, in_features + 5, dtype=dtype)[:, 2:2 + in_features]  # not contiguous
    bias = torch.randn(out_features, dtype=dtype)
    tolerance = {} if dtype == torch.float32 else dict(rtol=1e-13, atol=1e-13)
    for b in (bias, None):
        assert_close(cpu_shift.pow2_linear(x, codes, b, out_features), F.linear(x, weight, b), **tolerance)
    batched = x.reshape(rows, 1, in_features)
    assert cpu_shift.pow2_linear(batched, codes, bias, out_features).shape == (rows, 1, out_features)


@pytest.fixture
def packed_calls(monkeypatch):
    """Counts the packed kernel's calls; small test weights take it too."""
    monkeypatch.setattr(cpu_shift, "PACKED_MIN_WEIGHTS", 1)
    calls = []
    monkeypatch.setattr(cpu_shift, "pow2_linear", lambda *args, run=cpu_shift.pow2_linear: calls.append(1) or
                        run(*args))
    return calls


def test_packed_path_declines_what_it_does_not_take(kernels_built):
    k = 512
    m = cpu_shift.PACKED_MIN_WEIGHTS // k
    x = torch.randn(5, k)
    assert cpu_shift.packed_supported(x, None, m) and cpu_shift.packed_supported(x.double(), None, m)
    assert not cpu_shift.packed_supported(x.half(), None, m)
    assert not cpu_shift.packed_supported(x, torch.zeros(m, dtype=torch.float64), m)  # bias of another dtype
    assert not cpu_shift.packed_supported(torch.randn(cpu_shift.PACKED_MAX_ROWS + 1, k), None, m)
    assert not cpu_shift.packed_supported(x, None, m - 1)  # a weight small enough to stay in cache
    assert not cpu_shift.packed_supported(torch.randn(5, 0), None, m)


def test_small_weights_are_not_packed(kernels_built, monkeypatch):
    from fairseq_shiftadd.ops.kernels import dispatch

    calls = []
    monkeypatch.setattr(cpu_shift, "pow2_codes", lambda w, run=cpu_shift.pow2_codes: calls.append(1) or run(w))
    layer = ShiftLinear(64, 32).eval()
    with torch.no_grad():
        layer(torch.randn(5, 64))
    assert calls == []  # no codes built for a weight the packed kernel would not read
    large = _pow2_weight(512, cpu_shift.PACKED_MIN_WEIGHTS // 512, torch.float32)
    assert dispatch.pow2_codes(large) is not None and calls == [1]


@pytest.mark.parametrize("mode", ["ps", "q"])
def test_shift_linear_reads_codes_at_inference_on_few_rows(kernels_built, packed_calls, monkeypatch, mode):
    torch.manual_seed(0)
    layer = ShiftLinear(40, 70, mode=mode).eval()
    x = torch.randn(2, 3, 40)
    with torch.no_grad():
        y = layer(x)
        assert packed_calls == [1]
        assert_close(y, F.linear(x, layer.weight, layer.bias))
        layer(torch.randn(cpu_shift.PACKED_MAX_ROWS + 1, 40))  # more rows: the float GEMM
    assert packed_calls == [1]
    layer(x).sum().backward()  # autograd: the float weight, gradients as without the kernel
    assert packed_calls == [1] and layer.bias.grad is not None
    layer.requires_grad_(False)
    xi = x.clone().requires_grad_()
    layer(xi).sum().backward()  # frozen layer, but the input records autograd
    assert packed_calls == [1]
    assert_close(xi.grad, layer.weight.sum(0).expand_as(x))
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference")
    with torch.no_grad():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert packed_calls == [1]


def test_codes_follow_parameter_updates(kernels_built, packed_calls):
    torch.manual_seed(0)
    layer = ShiftLinear(16, 8).eval()
    x = torch.randn(4, 16)
    optimizer = torch.optim.SGD(layer.parameters(), lr=2.0)
    with torch.no_grad():
        before = layer(x)
    layer(x).square().sum().backward()  # in eval mode: no train() call clears the caches
    optimizer.step()
    with torch.no_grad():
        after = layer(x)
        assert_close(after, F.linear(x, layer.weight, layer.bias))
    assert not torch.equal(after, before) and len(packed_calls) == 2
    with torch.no_grad():
        layer.exponent.data.fill_(-3.0)  # bypasses the version counter: a mode switch clears the caches
        layer.train().eval()
        assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
