"""Tests of the lightweight token mixers (fairseq_shiftadd/ops/lightconv.py)."""
from __future__ import annotations

import math
from typing import List, Optional

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from fairseq_shiftadd.ops.op_counts import OpCounts
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.ops.lightconv import (
    BUFFER_BATCH_DIM,
    LightweightAdd,
    LightweightConv,
    LightweightMixer,
    LightweightShiftAdd,
    Padding,
)
from fairseq_shiftadd.ops.quant import QuantConfig

from _kernel_paths import on_both_paths

MIXERS = {"conv": LightweightConv, "add": LightweightAdd, "shiftadd": LightweightShiftAdd}
EXACT = dict(rtol=1e-12, atol=1e-12)


def make(name: str, channels: int = 6, kernel_size: int = 5, num_heads: int = 3, **kw) -> LightweightMixer:
    torch.manual_seed(0)
    return MIXERS[name](channels, kernel_size, num_heads, **kw).double().eval()


def naive_mix(x: torch.Tensor, kernel: torch.Tensor, left: int, op: OpKind) -> torch.Tensor:
    """Loop reference: y[t, b, c] = sum_j op(x[t + j - left, b, c], kernel[h(c), j]), zero outside [0, T)."""
    T, B, C = x.shape
    H, K = kernel.shape
    y = torch.zeros_like(x)
    for t in range(T):
        for b in range(B):
            for c in range(C):
                for j in range(K):
                    s = t + j - left
                    v = x[s, b, c] if 0 <= s < T else x.new_zeros(())
                    w = kernel[c // (C // H), j]
                    y[t, b, c] += v * w if op is OpKind.MULT else -(v - w).abs()
    return y


def stream(m: LightweightMixer, x: torch.Tensor, buffer: Optional[torch.Tensor] = None):
    """Feed x position by position through ``step``; returns (outputs so far (n, B, C), buffer)."""
    outs: List[torch.Tensor] = []
    for t in range(x.size(0)):
        out, buffer = m.step(x[t : t + 1], buffer)
        if out is not None:
            outs.append(out)
    return torch.cat(outs) if outs else x.new_zeros(0, *x.shape[1:]), buffer


# ---------------------------------------------------------------- forward values


@pytest.mark.parametrize("name", ["conv", "add"])
@pytest.mark.parametrize("padding,kernel_size", [("centred", 3), ("centred", 5), ("causal", 4), ("causal", 7)])
@pytest.mark.parametrize("softmax", [True, False])
def test_forward_matches_naive(name, padding, kernel_size, softmax):
    m = make(name, kernel_size=kernel_size, padding=padding, weight_softmax=softmax, bias=True)
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(6, 2, 6, dtype=torch.float64)
    kernel = m.weight.softmax(-1) if softmax else m.weight
    left = kernel_size // 2 if padding == "centred" else kernel_size - 1
    expected = naive_mix(x, kernel.detach(), left, m.op) + m.bias.detach()
    assert_close(m(x), expected, **EXACT)


def test_shiftadd_is_shift_linear_then_add():
    m = make("shiftadd", padding="causal")
    add = make("add", padding="causal")
    add.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("pre.")})
    x = torch.randn(7, 2, 6, dtype=torch.float64)
    assert_close(m(x), add(m.pre(x)), **EXACT)
    assert_close(m(x), naive_mix(m.pre(x), m.weight.softmax(-1), 4, OpKind.ADD), **EXACT)


@pytest.mark.parametrize("kernel_size", [3, 7, 15, 31])
def test_conv_matches_depthwise_conv1d(kernel_size):
    """Cross-check with stock F.conv1d (groups = C), kernel sizes of the space, K > T included."""
    T, B, C, H = 20, 2, 8, 4
    m = make("conv", channels=C, kernel_size=kernel_size, num_heads=H)
    x = torch.randn(T, B, C, dtype=torch.float64)
    weight = m.weight.softmax(-1).repeat_interleave(C // H, dim=0).unsqueeze(1)  # (C, 1, K)
    ref = F.conv1d(x.permute(1, 2, 0), weight, padding=kernel_size // 2, groups=C).permute(2, 0, 1)
    assert_close(m(x), ref, **EXACT)


def test_causal_output_ignores_future():
    for name in MIXERS:
        m = make(name, padding="causal")
        x = torch.randn(8, 2, 6, dtype=torch.float64)
        x2 = x.clone()
        x2[5:] = torch.randn(3, 2, 6)
        assert_close(m(x)[:5], m(x2)[:5], **EXACT)


# ---------------------------------------------------------------- incremental == full sequence


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("padding", ["centred", "causal"])
@pytest.mark.parametrize("T", [1, 2, 9])
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "inference"])
def test_incremental_equals_full(name, padding, T, grad):
    # without autograd the steps take mix_window's inference paths (the add kernel on CPU; broadcasting otherwise)
    m = make(name, padding=padding, bias=True)
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(T, 3, 6, dtype=torch.float64)
    full = m(x)
    with torch.set_grad_enabled(grad):
        outs, buffer = stream(m, x)
    assert outs.requires_grad == (grad and T > 2 if padding == "centred" else grad)
    assert buffer.shape == (min(4, T + (2 if padding == "centred" else 4)), 3, 6)
    streamed = torch.cat([outs, m.flush(buffer)])
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max().item() <= 1e-12
    if padding == "causal":  # one output per step, nothing pending
        assert outs.size(0) == T and m.flush(buffer).size(0) == 0
    else:  # lookahead K // 2 = 2
        assert outs.size(0) == max(T - 2, 0)


def test_incremental_kernel_size_one():
    for padding in ["centred", "causal"]:
        m = make("add", kernel_size=1, padding=padding)
        x = torch.randn(4, 2, 6, dtype=torch.float64)
        outs, buffer = stream(m, x)
        assert buffer.shape == (0, 2, 6)
        assert_close(outs, m(x), **EXACT)


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("padding", ["centred", "causal"])
def test_buffer_reorder_equals_reordered_batch(name, padding):
    """Beam reordering: index_select on BUFFER_BATCH_DIM == running on the reordered history."""
    m = make(name, padding=padding)
    x = torch.randn(4, 3, 6, dtype=torch.float64)
    new = torch.randn(5, 3, 6, dtype=torch.float64)
    for order in (torch.tensor([2, 0, 1]), torch.tensor([1, 1, 0])):  # a permutation, a beam selection
        before, buffer = stream(m, x)
        buffer = buffer.index_select(BUFFER_BATCH_DIM, order)
        after, buffer = stream(m, new, buffer)
        got = torch.cat([before.index_select(1, order), after, m.flush(buffer)])
        assert_close(got, m(torch.cat([x.index_select(1, order), new])), **EXACT)


# ---------------------------------------------------------------- padding mask


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("padding", ["centred", "causal"])
def test_padded_sentence_equals_sentence_alone(name, padding):
    m = make(name, padding=padding, bias=True)
    T, L = 8, 5
    sentence = torch.randn(L, 1, 6, dtype=torch.float64)
    alone = m(sentence)[:, 0]
    garbage = 100 * torch.randn(T, 2, 6, dtype=torch.float64)
    sides = ["left", "right"] if padding == "centred" else ["left"]
    for side in sides:
        batch = garbage.clone()
        mask = torch.zeros(2, T, dtype=torch.bool)
        span = slice(T - L, T) if side == "left" else slice(0, L)
        batch[span, 0] = sentence[:, 0]
        mask[0] = True
        mask[0, span] = False
        assert_close(m(batch, padding_mask=mask)[span, 0], alone, **EXACT)
        assert_close(m(batch, padding_mask=mask)[:, 1], m(garbage[:, 1:])[:, 0], **EXACT)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("padding", ["centred", "causal"])
def test_conv_gradcheck(padding):
    m = make("conv", kernel_size=3, num_heads=2, channels=4, padding=padding, bias=True, weight_softmax=True)
    x = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    w = m.weight.detach().clone().requires_grad_()
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return torch.func.functional_call(m, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))


def expected_add_grads(x, weight, g, left, softmax, eta):
    """AdderNet surrogate gradients through the unfolding, by hand: (d weight, d x)."""
    T, B, C = x.shape
    H, K = weight.shape
    R = C // H
    kernel = weight.softmax(-1) if softmax else weight
    xpad = F.pad(x, (0, 0, 0, 0, left, K - 1 - left))
    k_c = kernel.repeat_interleave(R, dim=0)  # (C, K): kernel row of each channel
    d_kernel = torch.zeros_like(kernel)
    d_xpad = torch.zeros_like(xpad)
    for j in range(K):
        window = xpad[j : j + T]  # x[t + j - left]
        d_kernel[:, j] = (g * (window - k_c[:, j])).reshape(T, B, H, R).sum(dim=(0, 1, 3))
        d_xpad[j : j + T] += g * torch.clamp(k_c[:, j] - window, -1.0, 1.0)
    if eta is not None:
        d_kernel = d_kernel * (eta * math.sqrt(H * K) / d_kernel.norm())
    if softmax:  # softmax Jacobian: dw = k * (dk - <dk, k>)
        d_kernel = kernel * (d_kernel - (d_kernel * kernel).sum(-1, keepdim=True))
    return d_kernel, d_xpad[left : left + T]


@pytest.mark.parametrize("padding", ["centred", "causal"])
@pytest.mark.parametrize("softmax", [False, True])
@pytest.mark.parametrize("eta", [None, 0.2])
def test_add_surrogate_gradients(padding, softmax, eta):
    m = make("add", kernel_size=3, padding=padding, weight_softmax=softmax, eta=eta)
    x = (0.7 * torch.randn(6, 2, 6, dtype=torch.float64)).requires_grad_()
    g = torch.randn(6, 2, 6, dtype=torch.float64)
    m(x).backward(g)
    left = 1 if padding == "centred" else 2
    d_weight, d_x = expected_add_grads(x.detach(), m.weight.detach(), g, left, softmax, eta)
    assert_close(m.weight.grad, d_weight, **EXACT)
    assert_close(x.grad, d_x, **EXACT)


# ---------------------------------------------------------------- DropConnect


@pytest.mark.parametrize("name", list(MIXERS))
def test_dropconnect_only_in_training(name):
    m = make(name, weight_dropout=0.5)
    x = torch.randn(5, 2, 6, dtype=torch.float64)
    m.train()
    kernels = [m.normalised_kernel() for _ in range(4)]
    assert any((k == 0).any() for k in kernels)
    assert not torch.equal(m(x), m(x))
    m.eval()
    assert torch.equal(m.normalised_kernel(), m.weight.softmax(-1))
    assert torch.equal(m(x), m(x))


# ---------------------------------------------------------------- op counts


def test_op_counts_conv_depthwise_and_flop_counter(monkeypatch):
    T, B, C, K = 7, 3, 8, 5
    m = make("conv", channels=C, kernel_size=K, num_heads=4)
    counts = m.op_counts((T, B, C))
    assert counts == OpCounts({(OpKind.MULT, 32): T * B * C * K, (OpKind.ADD, 32): T * B * C * (K - 1)})
    assert counts.count(OpKind.MULT) != T * B * C * C * K  # never costed as a dense conv
    # FlopCounterMode sees the reference path's one batched matmul (H, B*C/H*T, K) @ (H, K, 1): 2 * T*B*C*K
    # flops; the kernel softmax is not a counted op. (The fast path's band-matrix product multiplies zeros too.)
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference")
    with FlopCounterMode(display=False) as fc:
        m(torch.randn(T, B, C, dtype=torch.float64))
    assert fc.get_total_flops() // 2 == counts.count(OpKind.MULT)
    with_bias = make("conv", channels=C, kernel_size=K, num_heads=4, bias=True).op_counts((T, B, C))
    assert with_bias.count(OpKind.ADD) == T * B * C * K


def test_op_counts_add_and_shiftadd():
    T, B, C, K = 7, 3, 6, 5
    add = make("add", kernel_size=K).op_counts((T, B, C))
    assert add == OpCounts({(OpKind.ADD, 32): T * B * C * (2 * K - 1)})
    m = make("shiftadd", kernel_size=K)
    assert m.op_counts((T, B, C)) == m.pre.op_counts((T, B, C)) + add
    assert m.op_counts((T, B, C)).count(OpKind.SHIFT) == T * B * C * C
    # FlopCounterMode sees no multiplications in the adder mixer (maximum and sum only), and in the
    # shift-add mixer only the float emulation of the shift linear (a matmul by powers of two)
    x = torch.randn(T, B, C, dtype=torch.float64)
    with FlopCounterMode(display=False) as fc:
        make("add", kernel_size=K)(x)
    assert fc.get_total_flops() == 0
    with FlopCounterMode(display=False) as fc:
        m(x)
    assert fc.get_total_flops() // 2 == m.op_counts((T, B, C)).count(OpKind.SHIFT)


@pytest.mark.parametrize("name", list(MIXERS))
def test_op_counts_8bit(name):
    m = make(name, quant=QuantConfig(bits=8))
    counts = m.op_counts((4, 2, 6))
    assert counts.ops and all(bits == 8 for (_, bits) in counts.ops)
    assert counts.count(OpKind.ADD) == make(name).op_counts((4, 2, 6)).count(OpKind.ADD)


# ---------------------------------------------------------------- quantised mode


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("padding", ["centred", "causal"])
def test_quantised_operands_on_grid_and_incremental(name, padding):
    m = make(name, padding=padding, quant=QuantConfig(bits=8))
    x = torch.randn(7, 2, 6, dtype=torch.float64)
    m.train()
    m(x)  # calibrates the activation range
    m.eval()
    seq = (x if m.pre is None else m.pre(x)).permute(1, 2, 0)
    x_q, kernel_q = m.operand_quant(seq, m.normalised_kernel())
    if m.op is OpKind.MULT:  # symmetric per-head kernel grid
        scale = kernel_q.abs().amax(dim=1, keepdim=True) / 127
    else:  # |x - w|: input, kernel and hence the output on one shared symmetric grid
        scale = m.operand_quant.max_abs(seq, m.normalised_kernel()) / 127
        for v in (x_q, m(x)):
            assert_close(v / scale, torch.round(v / scale), rtol=0, atol=1e-6)
    assert_close(kernel_q / scale, torch.round(kernel_q / scale), rtol=0, atol=1e-9)
    full = m(x)
    outs, buffer = stream(m, x)
    assert_close(torch.cat([outs, m.flush(buffer)]), full, **EXACT)
    plain = make(name, padding=padding)
    assert (full - plain(x)).abs().max() < 0.1 * plain(x).abs().max()


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(channels=6, kernel_size=0, num_heads=3), "kernel_size"),
        (dict(channels=6, kernel_size=4, num_heads=3), "kernel_size"),
        (dict(channels=6, kernel_size=3, num_heads=4), "num_heads"),
        (dict(channels=0, kernel_size=3, num_heads=1), "channels"),
        (dict(channels=6, kernel_size=3, num_heads=3, padding="same"), "padding"),
        (dict(channels=6, kernel_size=3, num_heads=3, weight_dropout=1.0), "weight_dropout"),
    ],
)
@pytest.mark.parametrize("name", list(MIXERS))
def test_bad_arguments(name, kwargs, word):
    with pytest.raises(ValueError, match=word):
        MIXERS[name](**kwargs)


def test_bad_eta():
    with pytest.raises(ValueError, match="eta"):
        LightweightAdd(6, 3, 3, eta=-1.0)


@pytest.mark.parametrize("name", list(MIXERS))
def test_bad_inputs(name):
    m = make(name, kernel_size=3, padding="causal")
    with pytest.raises(ValueError, match="x"):
        m(torch.randn(4, 2, 5, dtype=torch.float64))  # wrong C
    with pytest.raises(ValueError, match="x"):
        m(torch.randn(4, 6, dtype=torch.float64))  # wrong rank
    with pytest.raises(ValueError, match="padding_mask"):
        m(torch.randn(4, 2, 6, dtype=torch.float64), padding_mask=torch.zeros(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="padding_mask"):
        m(torch.randn(4, 2, 6, dtype=torch.float64), padding_mask=torch.zeros(2, 4))  # not bool
    with pytest.raises(ValueError, match="x"):
        m.step(torch.randn(2, 2, 6, dtype=torch.float64), None)
    with pytest.raises(ValueError, match="buffer"):
        m.step(torch.randn(1, 2, 6, dtype=torch.float64), torch.zeros(2, 6, 2, dtype=torch.float64))  # (B, C, n)
    with pytest.raises(ValueError, match="input_shape"):
        m.op_counts((4, 2, 5))


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("padding", ["centred", "causal"])
@pytest.mark.parametrize("length,batch", [(0, 2), (5, 0), (0, 0)], ids=["no-positions", "no-sentences", "neither"])
def test_empty_input_gives_empty_output_and_zero_kernel_gradient(monkeypatch, name, padding, length, batch):
    """An empty sequence or batch trains as any other on the fast and the reference paths alike: an empty output,
    an empty input gradient, a zero (not NaN) kernel gradient (the reference once failed in ``unfold`` at T = 0)."""
    m = make(name, kernel_size=5, padding=padding).train()

    def run():
        m.zero_grad()
        x = torch.randn(length, batch, 6, dtype=torch.float64, requires_grad=True)
        y = m(x)
        y.backward(torch.ones_like(y))
        return y.detach(), x.grad, m.weight.grad.clone()

    fast, reference = on_both_paths(monkeypatch, run)
    for (y, x_grad, kernel_grad) in (fast, reference):
        assert y.shape == x_grad.shape == (length, batch, 6)
        assert kernel_grad.shape == m.weight.shape and not kernel_grad.any()


def test_padding_enum_accepts_strings_and_members():
    assert make("conv", padding=Padding.CAUSAL).padding is Padding.CAUSAL
    assert make("conv", padding="centred").padding is Padding.CENTRED
