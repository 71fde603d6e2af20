"""Triton kernels of the depthwise adder window for CUDA tensors: the depthwise ``AddConv2d`` and the lightweight add
mixers (AdderNet, arXiv 1912.13200), with no unfolded patches.

One window, strided and dilated, slides over a 4-D view ``x (N, C, H, W)`` (any strides: the mixers pass their
time-major ``(T, B, C)`` as ``(B, C, T, 1)``, the convolution a channels-last image); channel ``c`` meets row
``r(c) = c // per`` of the kernel ``w (R, kh, kw)`` (``per = C / R``: 1 for a depthwise convolution, the channels
of a head for a mixer). With ``ih = i*sh + u*dh - ph``, ``iw = j*sw + v*dw - pw`` and ``x`` zero outside
``[0, H) x [0, W)`` (the zero padding, as many positions on each side as the output size asks):

* :func:`forward` — ``y[n, c, i, j] = -sum_{u, v} |x[n, c, ih, iw] - w[r(c), u, v]|``;
* :func:`input_grad` — ``dx[n, c, a, b] = sum over (i, j, u, v) reading (a, b) of g[n, c, i, j] *
  clamp(w[r(c), u, v] - x[n, c, a, b], -1, 1)`` (AdderNet's HardTanh surrogate);
* :func:`weight_product` — ``p[c, u, v] = sum_{n, i, j} g[n, c, i, j] * x[n, c, ih, iw]`` (the ``g^T x`` of
  ``dw = p - w * sum g``, summed over the channels of each kernel row by :func:`depthwise_window`'s backward).

Each program owns a tile of ``BLOCK_P`` positions (flattened ``(n, i, j)``, or ``(n, a, b)`` for the input
gradient) by ``BLOCK_C`` channels in float32 registers and walks the taps; channels are the tile's inner axis, so
loads are contiguous wherever the channel stride is 1 (both callers arrange it). The weight product's programs
each sum a strided share of the position blocks per tap into one row of a ``(programs, kh * kw, C)`` float32
buffer (at most :data:`_PRODUCT_PROGRAMS` rows), which the wrapper sums: deterministic, no atomics. Memory
``O(NCHW + R kh kw)`` besides the operands. Half inputs are read as float32, and the outputs written in x's dtype.

:func:`depthwise_window` is the autograd function over these three (AdderNet's surrogate backward, the caller's
adaptive scaling passed in). Tiles are autotuned per ``(C, kh, kw)`` and the power-of-two bucket of the position
count; under ``TRITON_INTERPRET=1`` (how CI runs them without a GPU) one fixed tile, smaller than every test
shape's extent. Speed on a GPU: not measured yet (no GPU since these kernels were written).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from .build import GradScale
from .triton_adder import interpreting, quick_bench, triton, tl

__all__ = ["Window", "depthwise_window", "forward", "input_grad", "weight_product"]

_INTERPRETER_META = {"BLOCK_P": 32, "BLOCK_C": 16}
# autotuned (BLOCK_P, BLOCK_C, num_warps): few, as each new key compiles every one of them for three kernels (a mixer
# meets a new key with each power of two of B * T); not yet timed on a GPU
_TILES = [(64, 64, 4), (32, 128, 4), (128, 64, 8), (16, 64, 2)]
# the weight product's programs along the positions (rows of its partial sums): at most 128, each >= 64 positions
_PRODUCT_PROGRAMS, _PRODUCT_POSITIONS = 128, 64
_SIZES = ["P", "C", "H", "W", "HO", "WO", "P_BUCKET"]
_Pair = Tuple[int, int]


@dataclass(frozen=True)
class Window:
    """Where the window reads: input ``(H, W)``, output ``(HO, WO)``, stride, dilation and the zeros before the input
    on each axis (``padding``; after it as many as the output size needs)."""

    in_size: _Pair
    out_size: _Pair
    stride: _Pair = (1, 1)
    dilation: _Pair = (1, 1)
    padding: _Pair = (0, 0)

    def args(self) -> Tuple[int, ...]:
        """``H, W, HO, WO, sh, sw, dh, dw, ph, pw``, in the kernels' order."""
        return (*self.in_size, *self.out_size, *self.stride, *self.dilation, *self.padding)


if triton is not None:  # the kernels (module level: Triton resolves the helpers they call as globals)
    @triton.jit
    def _positions(p, HW2, W2):
        """``(n, i, j)`` of flattened positions over an ``(*, H2, W2)`` grid (``HW2 = H2 * W2``)."""
        return p // HW2, (p % HW2) // W2, p % W2

    @triton.jit(do_not_specialize=_SIZES)
    def _forward_kernel(x_ptr, w_ptr, y_ptr, P, C, PER, KH, KW, H, W, HO, WO, SH, SW, DH, DW, PH, PW,
                        sxn, sxc, sxh, sxw, swr, swh, sww, syn, syc, syh, syw, P_BUCKET,
                        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        p_ok, c_ok = p < P, c < C
        n, i, j = _positions(p, HO * WO, WO)
        x_rows = x_ptr + n * sxn
        x_cols = c * sxc
        w_cols = w_ptr + (c // PER) * swr
        acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
        for u in range(KH):
            ih = i * SH + u * DH - PH
            for v in range(KW):
                iw = j * SW + v * DW - PW
                ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                xs = tl.load((x_rows + ih * sxh + iw * sxw)[:, None] + x_cols[None, :],
                             mask=ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
                ws = tl.load(w_cols + u * swh + v * sww, mask=c_ok, other=0.0).to(tl.float32)
                acc -= tl.abs(xs - ws[None, :])
        y = (y_ptr + n * syn + i * syh + j * syw)[:, None] + (c * syc)[None, :]
        tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])

    @triton.jit(do_not_specialize=_SIZES)
    def _input_grad_kernel(g_ptr, x_ptr, w_ptr, dx_ptr, P, C, PER, KH, KW, H, W, HO, WO, SH, SW, DH, DW, PH, PW,
                           sgn, sgc, sgh, sgw, sxn, sxc, sxh, sxw, swr, swh, sww, P_BUCKET,
                           BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        q = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # input positions (n, a, b)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        q_ok, c_ok = q < P, c < C
        tile_ok = q_ok[:, None] & c_ok[None, :]
        n, a, b = _positions(q, H * W, W)
        x_tile = (x_ptr + n * sxn + a * sxh + b * sxw)[:, None] + (c * sxc)[None, :]
        xs = tl.load(x_tile, mask=tile_ok, other=0.0).to(tl.float32)
        g_rows = g_ptr + n * sgn
        g_cols = c * sgc
        w_cols = w_ptr + (c // PER) * swr
        acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
        for u in range(KH):
            top = a + PH - u * DH  # i * SH for the output row i that reads row a through tap u
            i = tl.maximum(top, 0) // SH
            i_ok = (top >= 0) & (top % SH == 0) & (i < HO)
            for v in range(KW):
                left = b + PW - v * DW
                j = tl.maximum(left, 0) // SW
                ok = q_ok & i_ok & (left >= 0) & (left % SW == 0) & (j < WO)
                gs = tl.load((g_rows + i * sgh + j * sgw)[:, None] + g_cols[None, :],
                             mask=ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
                ws = tl.load(w_cols + u * swh + v * sww, mask=c_ok, other=0.0).to(tl.float32)
                acc += gs * tl.minimum(tl.maximum(ws[None, :] - xs, -1.0), 1.0)
        dx = (dx_ptr + n * sxn + a * sxh + b * sxw)[:, None] + (c * sxc)[None, :]  # dx has x's strides
        tl.store(dx, acc.to(dx_ptr.dtype.element_ty), mask=tile_ok)

    @triton.jit(do_not_specialize=_SIZES)
    def _weight_product_kernel(g_ptr, x_ptr, part_ptr, P, C, KH, KW, H, W, HO, WO, SH, SW, DH, DW, PH, PW,
                               sgn, sgc, sgh, sgw, sxn, sxc, sxh, sxw, P_BUCKET,
                               BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        program, programs = tl.program_id(0), tl.num_programs(0)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < C
        for u in range(KH):
            for v in range(KW):
                total = tl.zeros((BLOCK_C,), dtype=tl.float32)
                for p0 in range(program * BLOCK_P, P, programs * BLOCK_P):
                    p = p0 + tl.arange(0, BLOCK_P)
                    n, i, j = _positions(p, HO * WO, WO)
                    ih, iw = i * SH + u * DH - PH, j * SW + v * DW - PW
                    g_ok = (p < P)[:, None] & c_ok[None, :]
                    x_ok = ((p < P) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W))[:, None] & c_ok[None, :]
                    gs = tl.load((g_ptr + n * sgn + i * sgh + j * sgw)[:, None] + (c * sgc)[None, :], mask=g_ok,
                                 other=0.0).to(tl.float32)
                    xs = tl.load((x_ptr + n * sxn + ih * sxh + iw * sxw)[:, None] + (c * sxc)[None, :], mask=x_ok,
                                 other=0.0).to(tl.float32)
                    total += tl.sum(gs * xs, axis=0)
                tl.store(part_ptr + (program * KH * KW + u * KW + v) * C + c, total, mask=c_ok)


@functools.lru_cache(maxsize=None)
def _kernels() -> Dict[str, Callable]:
    """The kernels by name, autotuned on a GPU (plain under the interpreter)."""
    jitted = {"forward": _forward_kernel, "input_grad": _input_grad_kernel, "weight_product": _weight_product_kernel}
    if interpreting():
        return jitted
    configs = [triton.Config({"BLOCK_P": p, "BLOCK_C": c}, num_warps=w) for p, c, w in _TILES]
    return {name: triton.autotune(configs, key=["P_BUCKET", "C", "KH", "KW"], do_bench=quick_bench)(kernel)
            for name, kernel in jitted.items()}


def _launch(name: str, positions: int, channels: int, *args, programs: Optional[int] = None) -> None:
    """Run kernel ``name`` on ``args`` over ``positions x channels`` tiles (``programs``: a fixed count of programs
    along the positions); the positions' power-of-two bucket, the autotuner's key, is appended."""
    def grid(meta: dict) -> Tuple[int, int]:
        return programs or triton.cdiv(positions, meta["BLOCK_P"]), triton.cdiv(channels, meta["BLOCK_C"])

    kernel = _kernels()[name]
    bucket = triton.next_power_of_2(positions)
    if interpreting():
        kernel[grid(_INTERPRETER_META)](*args, bucket, **_INTERPRETER_META)
    else:
        kernel[grid](*args, bucket)


def _empty_like_layout(x: Tensor, size: Tuple[int, ...]) -> Tensor:
    """An empty tensor of ``size`` whose axes are laid out in the order of ``x``'s strides (outermost first)."""
    order = sorted(range(x.dim()), key=lambda d: (-x.stride(d), -d))
    strides, step = [0] * x.dim(), 1
    for d in reversed(order):
        strides[d], step = step, step * size[d]
    return torch.empty_strided(size, strides, dtype=x.dtype, device=x.device)


def forward(x: Tensor, weight: Tensor, window: Window) -> Tensor:
    """``y[n, c, i, j] = -sum_{u, v} |x[n, c, ih, iw] - w[r(c), u, v]|`` (module docstring).

    Shape: x (N, C, H, W), weight (R, kh, kw) with R dividing C -> (N, C, HO, WO), laid out as x, in x's dtype.
    """
    (batch, channels, _, _), (rows, kh, kw) = x.shape, weight.shape
    y = _empty_like_layout(x, (batch, channels, *window.out_size))
    positions = y.numel() // channels
    _launch("forward", positions, channels, x, weight, y, positions, channels, channels // rows, kh, kw,
            *window.args(), *x.stride(), *weight.stride(), *y.stride())
    return y


def input_grad(grad: Tensor, x: Tensor, weight: Tensor, window: Window) -> Tensor:
    """``dx`` of :func:`forward` with AdderNet's HardTanh surrogate (module docstring).

    Shape: grad (N, C, HO, WO), x (N, C, H, W), weight (R, kh, kw) -> (N, C, H, W), x's strides and dtype.
    """
    dx = torch.empty_like(x, memory_format=torch.preserve_format)
    if dx.stride() != x.stride():  # x is not dense: lay dx out contiguously and read x through a copy like it
        x = x.contiguous()
        dx = torch.empty_like(x)
    channels, (rows, kh, kw) = x.size(1), weight.shape
    positions = x.numel() // channels
    _launch("input_grad", positions, channels, grad, x, weight, dx, positions, channels, channels // rows, kh, kw,
            *window.args(), *grad.stride(), *x.stride(), *weight.stride())
    return dx


def weight_product(grad: Tensor, x: Tensor, taps: _Pair, window: Window) -> Tensor:
    """``p[c, u, v] = sum_{n, i, j} g[n, c, i, j] * x[n, c, ih, iw]`` in float32, per channel.

    Shape: grad (N, C, HO, WO), x (N, C, H, W) -> (C, kh, kw).
    """
    channels, (kh, kw) = x.size(1), taps
    positions = grad.numel() // channels
    programs = max(1, min(_PRODUCT_PROGRAMS, triton.cdiv(positions, _PRODUCT_POSITIONS)))
    partial = torch.empty(programs, kh * kw, channels, dtype=torch.float32, device=x.device)
    _launch("weight_product", positions, channels, grad, x, partial, positions, channels, kh, kw, *window.args(),
            *grad.stride(), *x.stride(), programs=programs)
    return partial.sum(dim=0).t().reshape(channels, kh, kw)


class _DepthwiseWindow(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, window: Window, scale: GradScale) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.window, ctx.scale = window, scale
        return forward(x, weight, window)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:
        x, weight = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = input_grad(grad, x, weight, ctx.window)
        if ctx.needs_input_grad[1]:
            rows, kh, kw = weight.shape
            per = x.size(1) // rows
            product = weight_product(grad, x, (kh, kw), ctx.window).view(rows, per, kh, kw).sum(dim=1)
            grad_sum = grad.sum(dim=(0, 2, 3), dtype=torch.float32).view(rows, per).sum(dim=1)
            dw = ctx.scale(product - weight.float() * grad_sum[:, None, None], product).to(weight.dtype)
        return dx, dw, None, None


def depthwise_window(x: Tensor, weight: Tensor, window: Window, scale: GradScale) -> Tensor:
    """:func:`forward` with AdderNet's surrogate backward: :func:`input_grad` and
    ``dw[r] = scale(sum_{c in r} (p[c] - w[r] * sum_{n, i, j} g[n, c]), p)`` (``p`` summed alike).

    ``scale(dw, p)`` is the caller's adaptive scaling (:func:`~fairseq_shiftadd.ops.adder.scale_weight_grad`).

    Shape: x (N, C, H, W), weight (R, kh, kw) with R dividing C -> (N, C, HO, WO), laid out as x.
    """
    return _DepthwiseWindow.apply(x, weight, window, scale)
