"""Tests of the AdderNet operators (fairseq_shiftadd.ops.adder)."""
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from fairseq_shiftadd.ops.adder import AddConv2d, AddLinear, GradNorm, _tiles, add_matmul, neg_l1_broadcast
from fairseq_shiftadd.ops.op_counts import OpCounts
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.ops.quant import QuantConfig, SharedScaleFakeQuant

from _kernel_paths import on_both_paths

REPO = Path(__file__).resolve().parents[2]
F64 = torch.float64
# add_matmul has two exact tile kernels, for few (< 8) and for many weight rows M: test both
ROWS = {"few_rows": 3, "many_rows": 12}
CONV_GEOMETRIES = {
    "plain": dict(in_channels=3, out_channels=4, kernel_size=3),
    "stride_pad_dil": dict(in_channels=3, out_channels=5, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2),
                           dilation=(2, 1)),
    "groups2": dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2),
    "depthwise": dict(in_channels=5, out_channels=5, kernel_size=3, stride=2, padding=1, groups=5),
    "many_rows": dict(in_channels=4, out_channels=20, kernel_size=2, stride=(1, 2), padding=1, groups=2),
}


# --- naive references (tests only) ---------------------------------------------------------------


def naive_neg_l1(x, w):
    """``-sum_k |x[..., n, k] - w[..., m, k]|`` by broadcasting (materialises N x M x K)."""
    return -(x[..., :, None, :] - w[..., None, :, :]).abs().sum(-1)


def naive_add_matmul_grads(g, x, w, eta):
    """The surrogate gradients written out with the N x M x K tensor."""
    diff = x[..., :, None, :] - w[..., None, :, :]  # (G, N, M, K)
    dw = (g[..., None] * diff).sum(-3)
    dx = (g[..., None] * (-diff).clamp(-1.0, 1.0)).sum(-2)
    if eta is not None:
        dw = eta * math.sqrt(dw.numel()) / dw.norm() * dw
    return dx, dw


def conv_patches(layer, x):
    """``x_pad`` and a function giving the (N, C_g, kh, kw) receptive field of output (i, j) in group g."""
    (ph, pw), (sh, sw), (dh, dw), (kh, kw) = layer.padding, layer.stride, layer.dilation, layer.kernel_size
    x_pad = F.pad(x, (pw, pw, ph, ph))
    cg = layer.in_channels // layer.groups

    def patch(g, i, j):
        return x_pad[:, g * cg:(g + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]

    return x_pad, patch


def naive_conv(layer, x, weight=None):
    """Loop over output positions: ``y[b, o, i, j] = -sum |patch - w[o]|`` (no bias)."""
    weight = layer.weight if weight is None else weight
    _, patch = conv_patches(layer, x)
    out_h, out_w = layer.output_size(*x.shape[2:])
    mg = layer.out_channels // layer.groups
    y = x.new_zeros(x.shape[0], layer.out_channels, out_h, out_w)
    for o in range(layer.out_channels):
        for i in range(out_h):
            for j in range(out_w):
                y[:, o, i, j] = -(patch(o // mg, i, j) - weight[o]).abs().sum((1, 2, 3))
    return y


def naive_conv_grads(layer, x, g, eta):
    """Surrogate gradients of an adder conv, accumulated position by position into x_pad and w."""
    x_pad, patch = conv_patches(layer, x)
    (ph, pw), (sh, sw), (dh, dw_), (kh, kw) = layer.padding, layer.stride, layer.dilation, layer.kernel_size
    w = layer.weight.detach()
    cg, mg = layer.in_channels // layer.groups, layer.out_channels // layer.groups
    dx_pad, dw = torch.zeros_like(x_pad), torch.zeros_like(w)
    for o in range(layer.out_channels):
        grp = o // mg
        for i in range(g.shape[2]):
            for j in range(g.shape[3]):
                p, gij = patch(grp, i, j), g[:, o, i, j, None, None, None]
                dw[o] += (gij * (p - w[o])).sum(0)
                dx_pad[:, grp * cg:(grp + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                       j * sw:j * sw + dw_ * (kw - 1) + 1:dw_] += gij * (w[o] - p).clamp(-1.0, 1.0)
    if eta is not None:
        dw = eta * math.sqrt(dw.numel()) / dw.norm() * dw
    return dx_pad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]], dw


def symmetric_grid(values, max_abs, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = max_abs / qmax
    return torch.clamp(torch.round(values / scale), -qmax, qmax) * scale, scale


# --- add_matmul --------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", ROWS.values(), ids=list(ROWS))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_add_matmul_forward_matches_broadcast(dtype, rows):
    torch.manual_seed(0)
    x, w = torch.randn(3, 9, 7, dtype=dtype), torch.randn(3, rows, 7, dtype=dtype)
    assert_close(add_matmul(x, w), naive_neg_l1(x, w))
    # non-contiguous operands give the same values
    xt, wt = x.transpose(1, 2).contiguous().transpose(1, 2), w.transpose(0, 1).contiguous().transpose(0, 1)
    assert not xt.is_contiguous() and not wt.is_contiguous()
    assert_close(add_matmul(xt, wt), naive_neg_l1(x, w))


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16], ids=["f64", "f32", "bf16"])
def test_neg_l1_broadcast_equals_add_matmul_with_one_weight_row(dtype):
    # the inference form of the add sum (the mixers' windows without autograd) against add_matmul's autograd path,
    # which runs the tiled reference or the compiled kernels
    torch.manual_seed(3)
    x, w = torch.randn(4, 37, 9).to(dtype), torch.randn(4, 1, 9).to(dtype)
    direct = neg_l1_broadcast(x, w).unsqueeze(-1)
    recorded = add_matmul(x.clone().requires_grad_(), w)
    assert direct.dtype == dtype and direct.shape == (4, 37, 1) and not direct.requires_grad
    assert recorded.requires_grad
    assert_close(direct, recorded.detach(), rtol=0, atol=0 if dtype is F64 else 1e-5)
    assert_close(direct.double(), naive_neg_l1(x.double(), w.double()), rtol=torch.finfo(dtype).eps, atol=1e-5)


@pytest.mark.parametrize("rows", ROWS.values(), ids=list(ROWS))
def test_add_matmul_float32_is_accurate_for_offset_operands(rows):
    # x and w share a large offset: the sums of the max-based kernels must not cancel on it
    torch.manual_seed(0)
    x = (torch.randn(1, 16, 64) * 2 + 1000.0).requires_grad_()
    w = (torch.randn(1, rows, 64) + 1000.0).requires_grad_()
    g = torch.randn(1, 16, rows)
    y = add_matmul(x, w, eta=None)
    y.backward(g)
    x64, w64 = x.detach().double(), w.detach().double()
    dx, dw = naive_add_matmul_grads(g.double(), x64, w64, None)
    assert_close(y.detach().double(), naive_neg_l1(x64, w64), rtol=1e-5, atol=1e-3)
    assert_close(x.grad.double(), dx, rtol=1e-5, atol=1e-3)
    assert_close(w.grad.double(), dw, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("rows", ROWS.values(), ids=list(ROWS))
@pytest.mark.parametrize("eta", [None, 0.2])
def test_add_matmul_backward_formulas(eta, rows):
    torch.manual_seed(0)
    # weights spread over [-2, 2] so that hardtanh both saturates and passes through
    x = torch.randn(2, 11, 6, dtype=F64, requires_grad=True)
    w = (2 * torch.rand(2, rows, 6, dtype=F64) - 1).mul(2).requires_grad_()
    g = torch.randn(2, 11, rows, dtype=F64)
    add_matmul(x, w, eta=eta).backward(g)
    dx, dw = naive_add_matmul_grads(g, x.detach(), w.detach(), eta)
    assert_close(x.grad, dx)
    assert_close(w.grad, dw)
    if eta is not None:  # the scaled gradient has norm eta * sqrt(numel)
        assert_close(w.grad.norm().item(), eta * math.sqrt(w.numel()))


def test_add_matmul_skips_unneeded_grads_and_zero_grad_is_finite():
    x, w = torch.randn(1, 4, 3), torch.randn(1, 2, 3, requires_grad=True)
    add_matmul(x, w).sum().mul(0).backward()  # ||dw|| = 0: no NaN from the adaptive scale
    assert torch.equal(w.grad, torch.zeros_like(w))
    assert x.grad is None


@pytest.mark.parametrize("centre", [False, True], ids=["plain", "centred"])
@pytest.mark.parametrize("rows", ROWS.values(), ids=list(ROWS))
def test_add_matmul_without_autograd_records_nothing_and_computes_the_same(rows, centre):
    # nothing to record (no grad mode, or no operand asks for a gradient): the value without the autograd Function
    torch.manual_seed(6)
    x, w = torch.randn(2, 5, 7, requires_grad=True), torch.randn(2, rows, 7, requires_grad=True)
    recorded = add_matmul(x, w, centre_outputs=centre)
    assert recorded.grad_fn is not None
    with torch.no_grad():
        unrecorded = add_matmul(x, w, centre_outputs=centre)
    with torch.inference_mode():
        inferred = add_matmul(x.detach(), w.detach(), centre_outputs=centre)
    plain = add_matmul(x.detach(), w.detach(), centre_outputs=centre)
    for y in (unrecorded, inferred, plain):
        assert y.grad_fn is None and not y.requires_grad
        assert torch.equal(y, recorded.detach())
    with pytest.raises(ValueError, match="disagree on G or K"):  # validated on either path
        with torch.no_grad():
            add_matmul(x, w[:, :, :3])


@pytest.mark.parametrize("rows", ROWS.values(), ids=list(ROWS))
def test_add_matmul_float32_backward_matches_float64(rows):
    torch.manual_seed(0)
    x64 = torch.randn(1, 33, 40, dtype=F64) * 3
    w64 = torch.randn(1, rows, 40, dtype=F64)
    g64 = torch.randn(1, 33, rows, dtype=F64)
    dx, dw = naive_add_matmul_grads(g64, x64, w64, None)
    x, w = x64.float().requires_grad_(), w64.float().requires_grad_()
    add_matmul(x, w, eta=None).backward(g64.float())
    assert_close(x.grad.double(), dx, rtol=1e-5, atol=1e-5)
    assert_close(w.grad.double(), dw, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("centre", [False, True])
@pytest.mark.parametrize("shape", [(3, 10, 7, 6), (1, 5, 1, 9), (4, 1, 3, 2), (2, 9, 12, 5)])
def test_tiling_does_not_change_results(shape, centre):
    groups, rows, cols, length = shape
    torch.manual_seed(0)
    x = torch.randn(groups, rows, length, dtype=F64)
    w = torch.randn(groups, cols, length, dtype=F64)
    g = torch.randn(groups, rows, cols, dtype=F64)
    results = []
    for budget in (1, 3 * length * 8, 2**30):  # one row per tile (many tiles), a few rows, everything at once
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = add_matmul(xi, wi, memory_budget_bytes=budget, centre_outputs=centre)
        y.backward(g)
        results.append((y.detach(), xi.grad, wi.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert_close(a, b, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 10, 7, 6), (2, 12, 300, 1000), (1, 4, 5000, 64)])
@pytest.mark.parametrize("budget", [1, 5000, 2**20, 2**30])
def test_tiles_cover_output_once_within_budget(shape, budget):
    groups, rows, cols, length = shape
    x, w = torch.empty(groups, rows, length), torch.empty(groups, cols, length)
    cover = torch.zeros(groups, rows, cols, dtype=torch.int32)
    for g, n, m, scratch in _tiles(x, w, budget):
        cover[g, n, m] += 1
        assert scratch.shape == (*cover[g, n, m].shape, length) and scratch.is_contiguous()
        assert scratch.numel() * 4 <= max(budget, length * 4)
    assert bool((cover == 1).all())


def _layer_norm_like(n, k, dtype=F64):
    """LayerNorm-ed rows (unit RMS), the inputs of the models' add linears."""
    return F.layer_norm(torch.randn(1, n, k, dtype=dtype), (k,))


@pytest.mark.parametrize("rows", ROWS.values(), ids=list(ROWS))
def test_centred_outputs_forward_and_backward_match_formula(rows):
    torch.manual_seed(0)
    x = torch.randn(2, 9, 7, dtype=F64, requires_grad=True)
    w = torch.randn(2, rows, 7, dtype=F64, requires_grad=True)
    g = torch.randn(2, 9, rows, dtype=F64)
    y = add_matmul(x, w, eta=None, centre_outputs=True)
    reference = naive_neg_l1(x.detach(), w.detach())
    assert_close(y, reference - reference.mean(-1, keepdim=True))
    y.backward(g)  # the exact chain rule through the centring, then AdderNet's surrogates
    dx, dw = naive_add_matmul_grads(g - g.mean(-1, keepdim=True), x.detach(), w.detach(), None)
    assert_close(x.grad, dx)
    assert_close(w.grad, dw)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_centred_outputs_keep_their_precision_under_a_large_offset(dtype, tolerance):
    # LayerNorm-ed x against unit-scale weights: -||x - w||_1 is about -600 while the outputs of a row vary
    # by tens; centred, the rounding is relative to that variation (the plain form rounds the offset)
    torch.manual_seed(0)
    x, w = _layer_norm_like(32, 512), torch.randn(1, 64, 512, dtype=F64)
    reference = naive_neg_l1(x, w)
    reference = reference - reference.mean(-1, keepdim=True)
    spread = reference.std().item()
    centred = add_matmul(x.to(dtype), w.to(dtype), centre_outputs=True).double()
    assert (centred - reference).abs().max().item() < tolerance * spread
    plain = add_matmul(x.to(dtype), w.to(dtype)).double()
    plain = plain - plain.mean(-1, keepdim=True)
    assert (plain - reference).abs().max().item() > (centred - reference).abs().max().item()


@pytest.mark.parametrize("rows", ROWS.values(), ids=list(ROWS))
def test_mult_grad_norm_matches_the_product_gradient_and_follows_the_loss_scale(rows):
    torch.manual_seed(0)
    x = torch.randn(1, 11, 6, dtype=F64) + 3.0  # an offset, which the centred dw computation must undo
    w = torch.randn(1, rows, 6, dtype=F64)
    g = torch.randn(1, 11, rows, dtype=F64)
    grads = {}
    for norm in GradNorm:
        for factor in (1.0, 1.0 / 4096):
            wi = w.clone().requires_grad_()
            add_matmul(x, wi, eta=0.5, grad_norm=norm).backward(g * factor)
            grads[norm, factor] = wi.grad
    _, surrogate = naive_add_matmul_grads(g, x, w, None)
    target = 0.5 * (g.transpose(1, 2) @ x).norm()  # the weight gradient of y = x w^T
    assert_close(grads[GradNorm.MULT, 1.0], target / surrogate.norm() * surrogate)
    assert_close(grads[GradNorm.MULT, 1.0 / 4096], grads[GradNorm.MULT, 1.0] / 4096)  # linear in the loss
    assert_close(grads[GradNorm.ADDERNET, 1.0 / 4096], grads[GradNorm.ADDERNET, 1.0])  # AdderNet: fixed norm
    assert_close(grads[GradNorm.ADDERNET, 1.0].norm().item(), 0.5 * math.sqrt(w.numel()))


@pytest.mark.parametrize("norm", list(GradNorm))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("centre", [False, True])
def test_zero_output_gradient_gives_zero_gradients(norm, dtype, centre):
    # 1024 weights: AdderNet's eta * sqrt(numel) / max(||dw||, tiny) overflowed to inf and 0 * inf was NaN
    x = torch.randn(1, 5, 32, dtype=dtype, requires_grad=True)
    w = torch.randn(1, 32, 32, dtype=dtype, requires_grad=True)
    (add_matmul(x, w, grad_norm=norm, centre_outputs=centre) * 0).sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(x.grad, torch.zeros_like(x))


def test_add_matmul_validates_arguments():
    x, w = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="x and weight must be 3-D"):
        add_matmul(x[0], w)
    with pytest.raises(ValueError, match="disagree on G or K"):
        add_matmul(x, w[..., :3])
    with pytest.raises(ValueError, match="disagree on G or K"):
        add_matmul(x, w[:1])
    with pytest.raises(ValueError, match="dtype"):
        add_matmul(x, w.double())
    with pytest.raises(ValueError, match="eta"):
        add_matmul(x, w, eta=0.0)
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        add_matmul(x, w, memory_budget_bytes=0)
    with pytest.raises(ValueError, match="grad_norm must be one of"):
        add_matmul(x, w, grad_norm="adam")


# --- AddLinear -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_add_linear_forward_leading_dims(bias):
    torch.manual_seed(0)
    layer = AddLinear(6, 4, bias=bias)
    if bias:
        torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, 3, 6)
    expected = naive_neg_l1(x.reshape(-1, 6), layer.weight).reshape(2, 3, 4)
    if bias:
        expected = expected + layer.bias
    assert_close(layer(x), expected)
    assert_close(layer(x.transpose(0, 1)), expected.transpose(0, 1))  # non-contiguous input
    assert layer(torch.randn(6)).shape == (4,)


@pytest.mark.parametrize("rows", ROWS.values(), ids=list(ROWS))
@pytest.mark.parametrize("eta", [None, 0.2])
def test_add_linear_backward_formulas(eta, rows):
    torch.manual_seed(0)
    layer = AddLinear(5, rows, eta=eta).double()
    x = (torch.randn(4, 2, 5, dtype=F64) * 0.5).requires_grad_()
    g = torch.randn(4, 2, rows, dtype=F64)
    layer(x).backward(g)
    w = layer.weight.detach()[None]
    dx, dw = naive_add_matmul_grads(g.reshape(1, 8, rows), x.detach().reshape(1, 8, 5), w, eta)
    assert_close(x.grad, dx.reshape(4, 2, 5))
    assert_close(layer.weight.grad, dw[0])


def test_bias_gradcheck():
    torch.manual_seed(0)
    linear, conv = AddLinear(4, 3, bias=True).double(), AddConv2d(2, 3, 2, bias=True).double()
    for layer, x in ((linear, torch.randn(5, 4, dtype=F64)), (conv, torch.randn(2, 2, 4, 4, dtype=F64))):
        bias = torch.randn_like(layer.bias, requires_grad=True)
        assert torch.autograd.gradcheck(lambda b: functional_call(layer, {"bias": b}, (x,)), (bias,))


# --- AddConv2d -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONV_GEOMETRIES))
def test_add_conv2d_forward_matches_loop(name):
    torch.manual_seed(0)
    layer = AddConv2d(**CONV_GEOMETRIES[name], bias=True)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, layer.in_channels, 7, 6)
    y = layer(x)
    assert y.shape == (2, layer.out_channels, *layer.output_size(7, 6))
    assert_close(y, naive_conv(layer, x) + layer.bias[:, None, None])
    x_nc = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last strides
    assert_close(layer(x_nc), y)


@pytest.mark.parametrize("name", list(CONV_GEOMETRIES))
@pytest.mark.parametrize("eta", [None, 0.2])
def test_add_conv2d_backward_formulas(name, eta):
    torch.manual_seed(0)
    layer = AddConv2d(**CONV_GEOMETRIES[name], eta=eta).double()
    x = torch.randn(2, layer.in_channels, 6, 5, dtype=F64).requires_grad_()
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    dx, dw = naive_conv_grads(layer, x.detach(), g, eta)
    assert_close(x.grad, dx)
    assert_close(layer.weight.grad, dw)


@pytest.mark.parametrize("name", ["groups2", "many_rows"])
def test_add_conv2d_tiny_budget_matches_default(name):
    torch.manual_seed(0)
    geometry = CONV_GEOMETRIES[name]
    big, tiny = AddConv2d(**geometry).double(), AddConv2d(**geometry, memory_budget_bytes=1).double()
    tiny.load_state_dict(big.state_dict())
    x = torch.randn(2, geometry["in_channels"], 5, 5, dtype=F64)
    grads = []
    for layer in (big, tiny):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        y.backward(torch.ones_like(y))
        grads.append((y.detach(), xi.grad, layer.weight.grad))
    for a, b in zip(*grads):
        assert_close(a, b, rtol=1e-13, atol=1e-12)


# --- memory --------------------------------------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import time, torch
    from fairseq_shiftadd.ops.adder import AddLinear, add_matmul

    def kib(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    N, K, M = {n}, {k}, {m}
    torch.set_num_threads(1)  # one thread: steadier timing on a shared machine; memory is the same
    torch.manual_seed(0)
    layer = AddLinear(K, M)
    x = torch.randn(N, K, requires_grad=True)
    forward = layer if not {centre} else lambda x: add_matmul(x[None], layer.weight[None], centre_outputs=True)
    forward(x[:2]).sum().backward()  # load kernels, allocate .grad
    base = kib("VmRSS")
    start = time.perf_counter()
    forward(x).sum().backward()
    print((kib("VmHWM") - base) / 1024, time.perf_counter() - start)
    """
)


@pytest.mark.parametrize("n, k, m, centre", [(1024, 1024, 4096, False), (512, 1024, 2048, True)])
def test_add_linear_memory_is_bounded(n, k, m, centre):
    """Forward + backward at N=1024, K=1024, M=4096 (float32): the N x M x K difference would be 16 GiB;
    centred outputs (``centre_outputs``) at 512 x 1024 x 2048 (4 GiB)."""
    script = _MEMORY_SCRIPT.format(n=n, k=k, m=m, centre=centre)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    extra_mib, seconds = map(float, out.stdout.split()[-2:])
    naive_mib = n * m * k * 4 / 2**20
    # y, dy, dw, the centred copies and the tiles: about 100 MiB; far from 16 GiB
    assert extra_mib < 512, f"peak extra memory {extra_mib:.0f} MiB (naive {naive_mib:.0f} MiB), {seconds:.1f} s"


# --- op counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("quant, bits", [(None, 32), (QuantConfig(bits=8), 8)])
def test_add_linear_op_counts(bias, quant, bits):
    layer = AddLinear(16, 8, bias=bias, quant=quant)
    n, k, m = 2 * 5, 16, 8
    counts = layer.op_counts((2, 5, 16))
    assert counts == OpCounts.of(OpKind.ADD, bits, n * m * (2 * k - 1) + (n * m if bias else 0))
    assert counts.count(OpKind.MULT) == 0 and counts.count(OpKind.SHIFT) == 0


@pytest.mark.parametrize("quant, bits", [(None, 32), (QuantConfig(bits=8), 8)])
def test_add_conv2d_op_counts(quant, bits):
    # dense 3x3, 8 -> 16 channels, stride 2, padding 1 on 2 x 8 x 9 x 9: 5 x 5 outputs
    dense = AddConv2d(8, 16, 3, stride=2, padding=1, bias=True, quant=quant)
    outputs = 2 * 16 * 5 * 5
    assert dense.op_counts((2, 8, 9, 9)) == OpCounts.of(OpKind.ADD, bits, outputs * (2 * 8 * 9 - 1) + outputs)
    # depthwise: each output sums over its own channel's 3 x 3 window only, not over all 8 channels
    depthwise = AddConv2d(8, 8, 3, padding=1, groups=8, quant=quant)
    outputs = 2 * 8 * 9 * 9
    assert depthwise.op_counts((2, 8, 9, 9)) == OpCounts.of(OpKind.ADD, bits, outputs * (2 * 9 - 1))
    # groups = 2: dot products of length (8 / 2) * 3 * 3
    grouped = AddConv2d(8, 6, 3, groups=2, quant=quant)
    assert grouped.op_counts((1, 8, 5, 5)) == OpCounts.of(OpKind.ADD, bits, 6 * 3 * 3 * (2 * 4 * 9 - 1))


def test_forward_has_no_multiplications():
    """FlopCounterMode sees no matmul/conv in the forward pass: the counts' zero mults are what runs."""
    layers = ((AddLinear(16, 8), torch.randn(4, 16)), (AddConv2d(4, 6, 3, groups=2), torch.randn(1, 4, 6, 6)))
    for layer, x in layers:
        with FlopCounterMode(display=False) as counter:
            layer(x)
        assert counter.get_total_flops() == 0
        assert layer.op_counts(x.shape).count(OpKind.MULT) == 0


# --- quantisation --------------------------------------------------------------------------------


def test_quantised_linear_uses_one_shared_grid():
    torch.manual_seed(0)
    config = QuantConfig(bits=8, momentum=0.1)
    layer = AddLinear(12, 5, quant=config)
    x = torch.randn(7, 12) * 3
    y = layer(x)
    low, high = x.min(), x.max()  # the first training batch initialises the running range
    max_abs = torch.stack([low.abs(), high.abs(), layer.weight.detach().abs().max()]).max()
    xq, scale = symmetric_grid(x, max_abs, 8)
    wq, _ = symmetric_grid(layer.weight.detach(), max_abs, 8)
    assert_close(y, naive_neg_l1(xq, wq))
    # x - w is an integer multiple of the one scale: subtractable in 8-bit fixed point
    levels = (xq[:, None, :] - wq[None]) / scale
    assert_close(levels, levels.round(), rtol=0, atol=1e-4)
    assert levels.abs().max() <= 2 * 127
    assert_close(layer.operand_quant.range.low, low)
    assert_close(layer.operand_quant.range.high, high)


def test_quantised_range_updates_in_training_only():
    torch.manual_seed(0)
    layer = AddLinear(6, 3, quant=QuantConfig(bits=8, momentum=0.25))
    first, second = torch.randn(5, 6), torch.randn(5, 6) * 4
    layer(first)
    layer(second)
    rng = layer.operand_quant.range
    assert_close(rng.low, first.min() + 0.25 * (second.min() - first.min()))
    assert_close(rng.high, first.max() + 0.25 * (second.max() - first.max()))
    frozen = (rng.low.clone(), rng.high.clone())
    layer.eval()
    layer(torch.randn(5, 6) * 10)
    assert torch.equal(rng.low, frozen[0]) and torch.equal(rng.high, frozen[1])


def test_quantised_conv_matches_float_on_quantised_operands():
    torch.manual_seed(0)
    layer = AddConv2d(4, 6, 3, padding=1, groups=2, quant=QuantConfig(bits=8))
    x = torch.randn(2, 4, 5, 5)
    y = layer(x)
    max_abs = torch.stack([x.min().abs(), x.max().abs(), layer.weight.detach().abs().max()]).max()
    xq, _ = symmetric_grid(x, max_abs, 8)
    wq, _ = symmetric_grid(layer.weight.detach(), max_abs, 8)
    assert_close(y, naive_conv(layer, xq, wq))


def test_quantised_training_step_runs():
    torch.manual_seed(0)
    layer = AddLinear(6, 3, quant=QuantConfig(bits=4))
    x = torch.randn(5, 6, requires_grad=True)
    layer(x).sum().backward()
    assert torch.isfinite(layer.weight.grad).all() and torch.isfinite(x.grad).all()
    assert layer.weight.grad.abs().sum() > 0


def test_shared_scale_fake_quant_disabled_is_identity():
    quant = SharedScaleFakeQuant(None)
    x, w = torch.randn(3), torch.randn(2)
    xq, wq = quant(x, w)
    assert xq is x and wq is w


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_class,torch_class,arguments,shape", [
    (AddLinear, torch.nn.Linear, dict(in_features=6, out_features=4), (0, 6)),
    (AddLinear, torch.nn.Linear, dict(in_features=6, out_features=4), (0, 3, 6)),
    *((AddConv2d, torch.nn.Conv2d, geometry, (0, geometry["in_channels"], 6, 5))
      for geometry in CONV_GEOMETRIES.values()),
], ids=["linear", "linear-3d", *CONV_GEOMETRIES])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_empty_batch_gives_empty_output_on_both_paths(monkeypatch, layer_class, torch_class, arguments, shape, train):
    """No rows in, no rows out, of the shape torch's own layer gives, with an empty input gradient and a zero weight
    gradient, on the fast and the reference paths (the conv once failed on an ambiguous ``view(..., -1)``)."""
    torch.manual_seed(0)
    layer = layer_class(**arguments).double().train(train)
    expected = torch_class(**arguments)(torch.zeros(shape)).shape

    def run():
        layer.zero_grad()
        x = torch.randn(*shape, dtype=F64, requires_grad=train)
        y = layer(x)
        if not train:
            return y.detach(), None, None
        y.backward(torch.ones_like(y))
        return y.detach(), x.grad, layer.weight.grad.clone()

    for y, x_grad, weight_grad in on_both_paths(monkeypatch, run):
        assert y.shape == expected
        if train:
            assert x_grad.shape == shape and not weight_grad.any()


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="x must have shape"):
        AddLinear(4, 3)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="input_shape"):
        AddLinear(4, 3).op_counts((2, 5))
    with pytest.raises(ValueError, match="in_features"):
        AddLinear(0, 3)
    with pytest.raises(ValueError, match="out_features"):
        AddLinear(3, -1)
    with pytest.raises(ValueError, match="eta"):
        AddLinear(3, 2, eta=-0.1)
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        AddLinear(3, 2, memory_budget_bytes=0)
    with pytest.raises(ValueError, match="bits"):
        AddLinear(3, 2, quant=QuantConfig(bits=1))
    with pytest.raises(ValueError, match="groups"):
        AddConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        AddConv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        AddConv2d(3, 4, 0)
    with pytest.raises(ValueError, match="stride"):
        AddConv2d(3, 4, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        AddConv2d(3, 4, 3, padding=-1)
    with pytest.raises(ValueError, match="dilation"):
        AddConv2d(3, 4, 3, dilation=(1, 0))
    conv = AddConv2d(3, 4, 3)
    with pytest.raises(ValueError, match="x must have shape"):
        conv(torch.randn(3, 5, 5))
    with pytest.raises(ValueError, match="x must have shape"):
        conv(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="x spatial size"):
        conv(torch.randn(1, 3, 2, 5))
    with pytest.raises(ValueError, match="input_shape"):
        conv.op_counts((1, 4, 5, 5))
