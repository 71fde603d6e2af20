"""Tests of the DeepShift operators (fairseq_shiftadd.ops.shift)."""
import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from fairseq_shiftadd.ops.op_counts import OpCounts
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.ops.quant import ActivationFakeQuant, QuantConfig
from fairseq_shiftadd.ops.shift import (
    PSWeight,
    ShiftConv2d,
    ShiftLinear,
    ShiftMode,
    exponent_range,
    fixed_point_ste,
    ps_parts,
    ps_weight,
    round_pow2_ste,
    round_ste,
)

MODES = [ShiftMode.PS, ShiftMode.Q]
LN2 = math.log(2.0)


def assert_signed_pow2(w: torch.Tensor, low: int, high: int) -> None:
    """Every entry is 0 or +-2**p with an integer p in [low, high]."""
    nonzero = w[w != 0]
    mantissa, exponent = torch.frexp(nonzero)  # w = mantissa * 2**exponent, |mantissa| in [0.5, 1)
    assert bool((mantissa.abs() == 0.5).all())
    if nonzero.numel():
        assert low <= int(exponent.min()) - 1 and int(exponent.max()) - 1 <= high


def small_conv(mode, **kw) -> ShiftConv2d:
    geometry = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    geometry.update(kw)
    return ShiftConv2d(4, 6, mode=mode, **geometry)


# --- functions -------------------------------------------------------------------------------


@pytest.mark.parametrize("bits, expected", [(2, (0, 0)), (3, (-2, 0)), (5, (-14, 0)), (8, (-126, 0))])
def test_exponent_range(bits, expected):
    assert exponent_range(bits) == expected


@pytest.mark.parametrize("bits", [1, 9, 5.0, True, None])
def test_weight_bits_validated(bits):
    with pytest.raises(ValueError, match="weight_bits"):
        exponent_range(bits)
    with pytest.raises(ValueError, match="weight_bits"):
        round_pow2_ste(torch.ones(2), bits)
    with pytest.raises(ValueError, match="weight_bits"):
        ShiftLinear(3, 2, weight_bits=bits)


def test_round_ste_values_and_gradient():
    x = torch.tensor([-1.6, -0.5, 0.4, 1.5, 2.5], requires_grad=True)
    y = round_ste(x)
    assert torch.equal(y, torch.tensor([-2.0, -0.0, 0.0, 2.0, 2.0]))  # half to even
    y.backward(torch.arange(5.0))
    assert torch.equal(x.grad, torch.arange(5.0))


def test_round_pow2_ste_hand_values_and_gradient():
    w = torch.tensor([0.3, -0.7, 0.0, 3.0, 1e-9, -0.05, 0.75], dtype=torch.float64, requires_grad=True)
    # log2: -1.74 -> -2; -0.51 -> -1; 0 stays 0; 1.58 -> clamped 0; -29.9 -> clamped -14; -4.32 -> -4; -0.415 -> 0
    expected = torch.tensor([0.25, -0.5, 0.0, 1.0, 2.0**-14, -(2.0**-4), 1.0], dtype=torch.float64)
    y = round_pow2_ste(w, weight_bits=5)
    assert torch.equal(y, expected)
    g = torch.randn(7, dtype=torch.float64)
    y.backward(g)
    assert torch.equal(w.grad, g)


def _exact_log2_round(value: float) -> int:
    """``round(log2|value|)`` in exact rational arithmetic: the ``p`` with ``2**(2p - 1) <= value**2 < 2**(2p + 1)``."""
    square, p = Fraction(value) ** 2, math.floor(math.log2(abs(value)))
    return next(q for q in (p - 1, p, p + 1) if Fraction(2) ** (2 * q - 1) <= square < Fraction(2) ** (2 * q + 1))


def _around_half_exponents(dtype: torch.dtype, exponents: range) -> torch.Tensor:
    """The two values of ``dtype`` on either side of each ``+-2**(p + 1/2)`` (where ``round(log2|w|)`` steps)."""
    values = []
    for p in exponents:
        boundary = torch.tensor(2.0 ** (p + 0.5), dtype=torch.float64).to(dtype)
        for value in (boundary, torch.nextafter(boundary, boundary * 2), torch.nextafter(boundary, boundary / 2)):
            values += [value, -value]
    return torch.stack(values)


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=["f32", "f64", "f16", "bf16"])
def test_round_pow2_ste_rounds_exactly_beside_the_half_exponents(monkeypatch, reference, dtype):
    """``log2`` then ``round`` put 20-23 of these 52 values per dtype on the wrong side (measured): a logarithm a hair
    above ``p + 1/2`` computed as exactly ``p + 1/2``, rounded half to even."""
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference" if reference else "")
    low = -14 if dtype is torch.float16 else -20  # float16's normal range ends at 2**-14
    w = _around_half_exponents(dtype, range(low, 1))
    expected = [min(max(_exact_log2_round(v), -14), 0) for v in w.double().tolist()]
    q = round_pow2_ste(w, weight_bits=5)
    assert q.dtype == dtype and torch.equal(torch.sign(q), torch.sign(w))
    assert [int(math.log2(abs(v))) for v in q.double().tolist()] == expected


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_round_pow2_ste_special_values(monkeypatch, reference):
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference" if reference else "")
    w = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-40])  # zeros, infinities, subnormals
    q = round_pow2_ste(w)
    assert torch.equal(q[:4], torch.tensor([0.0, 0.0, 1.0, -1.0])) and not q[:2].signbit().any()  # +0 for both
    assert q[4].isnan()  # a diverged weight stays visible
    assert torch.equal(q[5:], torch.tensor([2.0**-14, -(2.0**-14)]))


@pytest.mark.parametrize("bits", [2, 4, 5, 8])
def test_round_pow2_ste_range_and_log_rounding(bits):
    low, high = exponent_range(bits)
    w = torch.randn(500, dtype=torch.float64) * torch.exp2(torch.empty(500, dtype=torch.float64).uniform_(-20, 2))
    q = round_pow2_ste(w, bits)
    assert_signed_pow2(q, low, high)
    assert torch.equal(torch.sign(q), torch.sign(w))
    inside = (w.abs() >= 2.0**low) & (w.abs() <= 1.0)
    ratio = (q / w)[inside]
    assert bool((ratio <= math.sqrt(2)).all()) and bool((ratio >= 1 / math.sqrt(2)).all())
    assert bool((q.abs()[w.abs() < 2.0**low] == 2.0**low).all())
    assert bool((q.abs()[w.abs() > 1.0] == 1.0).all())


def test_fixed_point_values_range_and_clipped_gradient():
    bits, frac = 6, 2  # grid step 0.25, range [-8, 7.75]
    x = torch.tensor([0.1, 0.13, -0.38, 3.6, 7.8, 7.9, -8.0, -9.0, 100.0], requires_grad=True)
    y = fixed_point_ste(x, bits, frac)
    assert torch.equal(y, torch.tensor([0.0, 0.25, -0.5, 3.5, 7.75, 7.75, -8.0, -8.0, 7.75]))
    y.backward(torch.ones_like(x))
    assert torch.equal(x.grad, torch.tensor([1.0, 1, 1, 1, 0, 0, 1, 0, 0]))


def test_fixed_point_on_grid_random():
    x = torch.randn(1000) * 50
    y = fixed_point_ste(x, 16, 8)
    assert torch.equal(y * 256, torch.round(y * 256))
    assert float(y.min()) >= -128 and float(y.max()) <= 128 - 2**-8
    inside = x.abs() < 127
    assert bool(((y - x).abs()[inside] <= 2**-9).all())


@pytest.mark.parametrize(
    "bits, frac, name", [(1, 0, "bits"), (33, 4, "bits"), (8, 9, "frac_bits"), (8, -1, "frac_bits")]
)
def test_fixed_point_validated(bits, frac, name):
    with pytest.raises(ValueError, match=name):
        fixed_point_ste(torch.ones(2), bits, frac)


# --- construction and bad input -----------------------------------------------------------------


def test_mode_accepts_strings_and_enum():
    assert ShiftLinear(3, 2, mode="q").mode is ShiftMode.Q
    assert ShiftLinear(3, 2, mode=ShiftMode.PS).mode is ShiftMode.PS
    assert {n for n, _ in ShiftLinear(3, 2).named_parameters()} == {"exponent", "sign", "bias"}
    assert {n for n, _ in ShiftLinear(3, 2, mode="q").named_parameters()} == {"latent_weight", "bias"}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(mode="deepshift"), "mode"),
        (dict(in_features=0), "in_features"),
        (dict(out_features=-1), "out_features"),
        (dict(activation_bits=1), "activation_bits"),
        (dict(activation_bits=8, activation_frac_bits=9), "activation_frac_bits"),
        (dict(activation_frac_bits=4), "activation_frac_bits"),
        (dict(activation_bits=8, quant=QuantConfig()), "activation_bits"),
    ],
)
def test_linear_bad_arguments(kwargs, name):
    args = dict(in_features=3, out_features=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        ShiftLinear(**args)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(kernel_size=0), "kernel_size"),
        (dict(kernel_size=(3, 3, 3)), "kernel_size"),
        (dict(stride=0), "stride"),
        (dict(padding=-1), "padding"),
        (dict(padding="same"), "padding"),
        (dict(dilation=(1, 0)), "dilation"),
        (dict(groups=3), "groups"),
        (dict(groups=0), "groups"),
        (dict(in_channels=0), "in_channels"),
        (dict(mode="PS!"), "mode"),
        (dict(weight_bits=9), "weight_bits"),
    ],
)
def test_conv_bad_arguments(kwargs, name):
    args = dict(in_channels=4, out_channels=6, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        ShiftConv2d(**args)


def test_bad_input_shapes():
    layer = ShiftLinear(3, 2)
    with pytest.raises(ValueError, match="x"):
        layer(torch.randn(4, 5))
    with pytest.raises(ValueError, match="input_shape"):
        layer.op_counts((4, 5))
    conv = ShiftConv2d(4, 6, 3)
    for shape in [(4, 5, 5), (1, 3, 5, 5), (1, 4, 2, 5)]:
        with pytest.raises(ValueError, match="x"):
            conv(torch.randn(shape))
        with pytest.raises(ValueError, match="input_shape"):
            conv.op_counts(shape)


def test_from_float_bad_layers():
    with pytest.raises(TypeError, match="nn.Linear"):
        ShiftLinear.from_float(nn.Conv2d(2, 2, 1))
    with pytest.raises(TypeError, match="nn.Conv2d"):
        ShiftConv2d.from_float(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="padding_mode"):
        ShiftConv2d.from_float(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="padding"):
        ShiftConv2d.from_float(nn.Conv2d(2, 2, 3, padding="same"))
    with pytest.raises(ValueError, match="weight"):
        ShiftLinear(3, 2).load_float_weight(torch.randn(3, 2))


# --- forward --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_is_linear_with_effective_weight(mode, bias):
    layer = ShiftLinear(5, 3, bias=bias, mode=mode).double()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (2, 4, 3)
    assert_close(y, F.linear(x, layer.weight, layer.bias))
    # naive reference: y[n, m] = sum_k x[n, k] * s[m, k] * 2**p[m, k] + b[m]
    w = layer.weight.detach()
    naive = (x[..., None, :] * w).sum(-1) + (0 if layer.bias is None else layer.bias.detach())
    assert_close(y.detach(), naive)


@pytest.mark.parametrize("mode", MODES)
def test_conv_forward_is_conv_with_effective_weight(mode):
    conv = small_conv(mode).double()
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    y = conv(x)
    assert y.shape == (2, 6, 4, 4)
    assert conv.weight.shape == (6, 2, 3, 2)
    assert_close(y, F.conv2d(x, conv.weight, conv.bias, (2, 1), (1, 0), (1, 2), 2))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bits", [2, 5, 8])
def test_effective_weights_are_signed_powers_of_two(mode, bits):
    low, high = exponent_range(bits)
    for layer in (ShiftLinear(16, 8, mode=mode, weight_bits=bits), small_conv(mode, weight_bits=bits)):
        with torch.no_grad():  # also perturb the stored values far outside the range
            for p in layer.parameters():
                p.mul_(3).add_(torch.randn_like(p) * 20)
        assert_signed_pow2(layer.weight.detach(), low, high)
        if mode is ShiftMode.Q:
            assert torch.equal(layer.weight, round_pow2_ste(layer.latent_weight, bits))


def test_ps_weight_formula():
    layer = ShiftLinear(3, 2, bias=False).double()
    with torch.no_grad():
        layer.exponent.copy_(torch.tensor([[-2.4, -0.6, -13.7], [0.3, -20.0, -3.5]]))
        layer.sign.copy_(torch.tensor([[0.7, -0.51, 0.2], [-0.49, 2.0, -1.0]]))
    expected = torch.tensor([[2.0**-2, -(2.0**-1), 0.0], [0.0, 2.0**-14, -(2.0**-4)]], dtype=torch.float64)
    assert torch.equal(layer.weight, expected)  # round half to even: -3.5 -> -4


def test_ps_functional_core_and_standalone_weight():
    exponent = torch.tensor([[-2.4, -0.6, -13.7], [0.3, -20.0, -3.5]], dtype=torch.float64)
    sign = torch.tensor([[0.7, -0.51, 0.2], [-0.49, 2.0, -1.0]], dtype=torch.float64)
    layer = ShiftLinear(3, 2, bias=False).double()
    with torch.no_grad():
        layer.exponent.copy_(exponent)
        layer.sign.copy_(sign)
    weight = ps_weight(exponent, sign)
    assert torch.equal(weight, layer.weight)  # one implementation: the layer calls the functional core
    assert (weight == 0).sum() == 2  # ternary sign: zero weights exist
    assert torch.equal(ps_weight(*ps_parts(weight)), weight)  # parts of a PS weight give it back, zeros included
    w = torch.randn(5, 4, dtype=torch.float64)
    assert torch.equal(ps_weight(*ps_parts(w)), round_pow2_ste(w))  # the conversion of a float weight is Q's value
    slot = PSWeight((5, 4), lambda t: t.copy_(w))
    assert torch.equal(slot.weight.double(), round_pow2_ste(w).float().double())
    with torch.no_grad():
        slot.exponent.fill_(-30.0)
    assert slot.weight.detach().abs().max() == 2.0**-14 and slot.exponent.detach().min() == -14  # stored value clamped
    state = PSWeight.state_of(slot.weight)
    other = PSWeight((5, 4), torch.nn.init.zeros_)
    other.load_state_dict(state)
    assert torch.equal(other.weight, slot.weight)


# --- clamping of the stored parameters ------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: ShiftLinear(6, 4), lambda: small_conv(ShiftMode.PS)])
def test_stored_exponent_clamped_after_optimizer_step(make):
    layer = make()
    x = torch.randn(2, 4, 7, 6) if isinstance(layer, ShiftConv2d) else torch.randn(3, 6)
    opt = torch.optim.SGD(layer.parameters(), lr=1e6)
    layer(x).pow(2).sum().backward()
    opt.step()
    exponent, sign = layer.exponent.detach(), layer.sign.detach()
    assert float(exponent.abs().max()) > 14 or float(sign.abs().max()) > 1  # the step left the range
    layer(x)  # one more forward clamps the parameters themselves
    assert float(exponent.min()) >= -14 and float(exponent.max()) <= 0
    assert float(sign.min()) >= -1 and float(sign.max()) <= 1


def test_clamp_alone_fixes_parameters_and_keeps_weight():
    layer = ShiftLinear(6, 4, weight_bits=4)
    with torch.no_grad():
        layer.exponent.copy_(torch.linspace(-40, 40, 24).view(4, 6))
        layer.sign.copy_(torch.linspace(-5, 5, 24).view(4, 6))
    before = layer.weight.detach().clone()
    layer.clamp_()
    exponent, sign = layer.exponent.detach(), layer.sign.detach()
    assert float(exponent.min()) == -6 and float(exponent.max()) == 0
    assert float(sign.min()) == -1 and float(sign.max()) == 1
    assert torch.equal(layer.weight, before)


def test_two_forwards_then_backward():
    layer = ShiftLinear(5, 3)
    x = torch.randn(4, 5)
    loss = layer(x).sum() + layer(x).sum()
    loss.backward()
    assert layer.exponent.grad is not None and layer.sign.grad is not None


# --- gradients ----------------------------------------------------------------------------------


def effective_weight_grad(layer, x, g):
    """dL/dw for L = <g, layer(x)>, w the effective weight treated as a leaf."""
    w = layer.weight.detach().requires_grad_(True)
    layer._compute(layer._quantize_input(x), w).backward(g)
    return w.grad


@pytest.mark.parametrize("conv", [False, True])
def test_ps_gradients_follow_deepshift(conv):
    layer = (small_conv(ShiftMode.PS) if conv else ShiftLinear(5, 3)).double()
    x = torch.randn(*((2, 4, 7, 6) if conv else (4, 5)), dtype=torch.float64, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    assert_close(layer.bias.grad, g.sum((0, 2, 3)) if conv else g.sum(0))
    w = layer.weight.detach()
    assert_close(x.grad, torch.nn.grad.conv2d_input(x.shape, w, g, (2, 1), (1, 0), (1, 2), 2) if conv else g @ w)
    grad_w = effective_weight_grad(layer, x.detach(), g)
    assert_close(layer.exponent.grad, grad_w * w * LN2)  # straight through round, then d 2**p / dp
    assert_close(layer.sign.grad, grad_w)  # DeepShift's unsymmetric product: 2**p not applied


@pytest.mark.parametrize("conv", [False, True])
def test_q_gradient_is_straight_through(conv):
    layer = (small_conv(ShiftMode.Q) if conv else ShiftLinear(5, 3, mode="q")).double()
    x = torch.randn(*((2, 4, 7, 6) if conv else (4, 5)), dtype=torch.float64)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    assert_close(layer.latent_weight.grad, effective_weight_grad(layer, x, g))


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_input_and_bias(mode):
    layer = ShiftLinear(4, 3, mode=mode).double()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: F.linear(x, layer.weight, b), (x, layer.bias))
    assert torch.autograd.gradcheck(layer, (x,))
    conv = small_conv(mode).double()
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_fixed_point_input_gradient_is_clipped():
    layer = ShiftLinear(3, 2, bias=False, activation_bits=4, activation_frac_bits=1).double()  # range [-4, 3.5]
    x = torch.tensor([[0.3, 3.7, -5.0]], dtype=torch.float64, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    assert_close(x.grad, (g @ layer.weight.detach()) * torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))


# --- fixed-point activations: exact shift arithmetic -----------------------------------------


def test_fixed_point_forward_is_integer_shift_arithmetic():
    bits, frac, weight_bits = 8, 4, 4  # activations: int8 with 4 fractional bits; exponents in [-6, 0]
    low, _ = exponent_range(weight_bits)
    torch.manual_seed(0)
    layer = ShiftLinear(
        6, 3, bias=False, weight_bits=weight_bits, activation_bits=bits, activation_frac_bits=frac
    ).double()
    with torch.no_grad():
        layer.exponent.copy_(torch.randint(low, 1, (3, 6)).double())
        layer.sign.copy_(torch.randint(-1, 2, (3, 6)).double())
    x = torch.randn(5, 6, dtype=torch.float64) * 3
    y = layer(x)
    # integer domain: x_int = clamp(round(x * 2**frac)); each product is s * (x_int << (p - p_min)),
    # accumulated in an integer with frac - p_min fractional bits.
    x_int = torch.round(x * 2**frac).clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1).long()
    shift = (layer.exponent.detach().long() - low)[None]  # (1, M, K), all >= 0
    sign = layer.sign.detach().long()[None]
    acc = (sign * torch.bitwise_left_shift(x_int[:, None, :], shift)).sum(-1)
    assert torch.equal(y.detach(), acc.double() * 2.0 ** (low - frac))
    assert_close(y, x_int.double() / 2**frac @ layer.weight.detach().T, rtol=0, atol=0)


def test_fixed_point_default_frac_bits():
    layer = ShiftLinear(3, 2, activation_bits=16)
    assert layer.activation_frac_bits == 8
    x = torch.randn(4, 3) * 10
    assert_close(layer(x), F.linear(fixed_point_ste(x, 16, 8), layer.weight, layer.bias))


# --- conversion from float layers ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_linear_from_float_conversion_error_bound(mode):
    torch.manual_seed(1)
    float_layer = nn.Linear(32, 16).double()
    with torch.no_grad():  # magnitudes spread over [2**-17, 1]: some below 2**-14 get clamped
        magnitude = torch.exp2(torch.empty(16, 32).uniform_(-17, 0))
        float_layer.weight.copy_(torch.sign(torch.randn(16, 32)) * magnitude)
    layer = ShiftLinear.from_float(float_layer, mode=mode)
    assert layer.weight.dtype == torch.float64 and layer.mode is mode
    w, w_float = layer.weight.detach(), float_layer.weight.detach()
    assert_signed_pow2(w, -14, 0)
    assert torch.equal(torch.sign(w), torch.sign(w_float))
    inside = w_float.abs() >= 2.0**-14
    assert bool(((w - w_float).abs()[inside] <= (math.sqrt(2) - 1) * w_float.abs()[inside]).all())
    assert bool((w.abs()[~inside] == 2.0**-14).all()) and bool((~inside).any())
    assert torch.equal(layer.bias, float_layer.bias)
    if mode is ShiftMode.PS:
        assert torch.equal(layer.exponent, torch.round(torch.log2(w_float.abs())).clamp(-14, 0))
        assert torch.equal(layer.sign, torch.sign(w_float))
    else:
        assert torch.equal(layer.latent_weight, w_float)
    # output error bound: |y - y_float| <= (sqrt(2) - 1) |x| |w|^T for weights that were not clamped
    with torch.no_grad():
        float_layer.weight.clamp_(min=2.0**-14)
    layer = ShiftLinear.from_float(float_layer, mode=mode)
    x = torch.randn(8, 32, dtype=torch.float64)
    bound = (math.sqrt(2) - 1) * x.abs() @ float_layer.weight.detach().abs().T
    assert bool(((layer(x) - float_layer(x)).abs() <= bound + 1e-12).all())


@pytest.mark.parametrize("mode", MODES)
def test_conv_from_float_keeps_geometry(mode):
    float_conv = nn.Conv2d(4, 8, (3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=4, bias=False)
    conv = ShiftConv2d.from_float(float_conv, mode=mode, weight_bits=6, activation_bits=12)
    assert (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups) == (
        (3, 2), (1, 2), (2, 1), (2, 1), 4
    )
    assert conv.bias is None and conv.weight_bits == 6 and conv.activation_bits == 12
    assert torch.equal(conv.weight, round_pow2_ste(float_conv.weight.detach(), 6))
    x = torch.randn(2, 4, 9, 8)
    assert_close(conv(x), F.conv2d(fixed_point_ste(x, 12, 6), conv.weight, None, (1, 2), (2, 1), (2, 1), 4))


# --- fake quantisation ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_quant_mode_quantises_inputs_not_weights(mode):
    cfg = QuantConfig(bits=8)
    layer = ShiftLinear(6, 4, mode=mode, quant=cfg)
    reference_quant = ActivationFakeQuant(cfg)
    x = torch.randn(10, 6)
    y = layer(x)
    x_q = reference_quant(x)
    assert_close(y, F.linear(x_q, layer.weight, layer.bias))
    assert_signed_pow2(layer.weight.detach(), -14, 0)
    levels = torch.unique(x_q)
    assert len(levels) <= 2**8 and not torch.equal(x_q, x)
    assert layer.op_counts((10, 6)) == OpCounts(
        {(OpKind.SHIFT, 8): 10 * 4 * 6, (OpKind.ADD, 8): 10 * 4 * 5 + 10 * 4}
    )
    conv = small_conv(mode, quant=cfg)
    x = torch.randn(2, 4, 7, 6)
    assert_close(conv(x), F.conv2d(ActivationFakeQuant(cfg)(x), conv.weight, conv.bias, (2, 1), (1, 0), (1, 2), 2))
    assert set(b for _, b in conv.op_counts(x.shape).ops) == {8}


# --- operation counts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, bits", [(dict(), 32), (dict(activation_bits=16), 16), (dict(quant=QuantConfig(bits=8)), 8)]
)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_op_counts(kwargs, bits, bias):
    n, t, k, m = 3, 5, 7, 4
    layer = ShiftLinear(k, m, bias=bias, **kwargs)
    counts = layer.op_counts((n, t, k))
    rows = n * t
    adds = rows * m * (k - 1) + (rows * m if bias else 0)
    expected = {(OpKind.SHIFT, bits): rows * m * k, (OpKind.ADD, bits): adds}
    assert counts == OpCounts(expected)
    assert counts.count(OpKind.MULT) == 0
    with FlopCounterMode(display=False) as flops:
        layer(torch.randn(n, t, k))
    assert flops.get_total_flops() // 2 == counts.count(OpKind.SHIFT)


@pytest.mark.parametrize(
    "geometry",
    [
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
             groups=2),
        dict(in_channels=8, out_channels=8, kernel_size=5, padding=2, groups=8),  # depthwise
    ],
)
def test_conv_op_counts(geometry):
    conv = ShiftConv2d(**geometry, activation_bits=16)
    n, h, w = 2, 9, 8
    c_in, c_out, groups = geometry["in_channels"], geometry["out_channels"], geometry.get("groups", 1)
    kh, kw = conv.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    outputs = n * c_out * h_out * w_out
    length = c_in // groups * kh * kw
    counts = conv.op_counts((n, c_in, h, w))
    assert counts == OpCounts({(OpKind.SHIFT, 16): outputs * length, (OpKind.ADD, 16): outputs * length})
    with FlopCounterMode(display=False) as flops:
        y = conv(torch.randn(n, c_in, h, w))
    assert y.shape == (n, c_out, h_out, w_out)
    assert flops.get_total_flops() // 2 == counts.count(OpKind.SHIFT)
    if groups == c_in:  # depthwise: K = kh * kw per output, not C_in * kh * kw
        assert counts.count(OpKind.SHIFT) == n * c_out * h_out * w_out * kh * kw
