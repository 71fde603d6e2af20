"""Triton kernels of the adder layer's negative-L1 products for CUDA tensors (AdderNet, arXiv 1912.13200).

Used for CUDA tensors when Triton is importable (the ``gpu`` extra); the tiled PyTorch code in
:mod:`fairseq_shiftadd.ops.adder` stays the reference and the fallback. Same contracts as :mod:`.cpu_adder`:

* :func:`neg_l1` — ``y[g, n, m] = -sum_k |x - w|``, or with ``centred`` the row-centred form from the
  per-element terms ``|x| - |x - w|`` (each bounded by ``|w|``), then minus the row mean;
* :func:`input_grad` — ``dx[g, n, k] = sum_m g[g, n, m] * clamp(w[g, m, k] - x[g, n, k], -1, 1)``.

The third product, the weight gradient ``g^T x - w * sum_n g``, is two matmuls (cuBLAS, in
:func:`~fairseq_shiftadd.ops.adder.add_matmul`'s backward).

**Rank-1 updates.** Each program owns an output tile (``BLOCK_N x BLOCK_M`` of y, or ``BLOCK_N x BLOCK_K``
of dx) in float32 registers and walks the reduced axis one index at a time, ``UNROLL`` indices per loop
trip: per index it loads one column of each operand (``x[:, k]`` and ``w[:, k]``, or ``g[:, m]`` and
``w[m, :]``), converts it to float32 and updates every element of the tile, so no ``tile x reduced``
temporary and no cross-thread reduction exists. The wrappers lay out the operands whose columns are read
(``x`` and ``w`` for the forward, ``g`` for the input gradient) column by column, so each column load is
contiguous: ``O(NK + MK + NM)`` copies.

* Forward: a term is a subtraction and an add of ``-|d|`` (the absolute value an operand modifier). The
  centred form sums each trip's ``UNROLL`` terms ``-|x_k - w_k|`` and ``|x_k|`` into a chunk first, so its
  accumulator only takes sums bounded by the chunk's ``sum |w_k|`` and pays one more add per trip, not per
  term.
* Input gradient, in one of two forms the autotuner chooses between (``BOUNDS``): ``clamp(w - x, -1, 1) =
  2 clamp(w / 2 + c, 0, 1) - 1`` with ``c = 1/2 - x/2`` per tile element, so ``dx = sum_m 2 g * clamp(w / 2 + c,
  0, 1) - sum_m g``: a multiply-add, the clamp, a multiply-add per term, one register tile besides the sums; or,
  as the CPU kernel, ``clamp(w, x' - 1, x' + 1) - x'`` with ``x'`` the tile's ``x`` clamped to its column's weight
  range +- 1 (which changes no term and bounds the cancellation in ``dx = sum_m g * clamp(w, x' - 1, x' + 1) - x'
  sum_m g``): a max, a min and a multiply-add per term, two register tiles (the bounds) besides the sums.

Measured on an H200 (``benchmarks/gpu_adder.py``, N=8192, K=512, M=2048; README): plain forward 9.1 T op/s in
float32, centred 6.2. A saturating ``fma.rn.sat`` in inline PTX for the clamp ran 3% slower than ``minimum`` /
``maximum`` in the same run, and summing the plain terms in chunks as well (one code path) ran the plain forward
in 1.26 instead of 0.94 ms (another run), so neither is used. Tiles are autotuned per ``(M, K)`` and the
power-of-two bucket of ``N`` (the token count changes with every batch); sizes are not specialised (strides are:
unit and 16-aligned strides matter), so a new batch size compiles at most the other alignment's variant. Ragged
edges are masked (loads read zeros, which add nothing; the reduced axis runs an unmasked main loop and a one-index
tail loop).

Under ``TRITON_INTERPRET=1`` (how CI tests these kernels without a GPU) the kernels take CPU tensors and
run one fixed tile configuration; Triton reads the flag when it is imported, so it must be set before.
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor

from .build import enabled

try:
    import triton
    import triton.language as tl
except ImportError:  # the optional `gpu` extra
    triton = tl = None

__all__ = ["triton_available", "interpreting", "triton_supported", "quick_bench", "kernels", "neg_l1", "input_grad"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# the fixed configuration of the interpreter: every test shape is ragged against it; the input gradient's form
# (``BOUNDS``) is the autotuner's choice on a GPU, fixed here (the tests run both)
_INTERPRETER_META = {"BLOCK_N": 16, "BLOCK_M": 16, "UNROLL": 4}
_INTERPRETER_FORMS = {"input_grad": {"BOUNDS": True}}
# autotuned (BLOCK_N, BLOCK_M (BLOCK_K for dx), UNROLL, num_warps)
# (the input gradient keeps two tiles in registers, x's offsets and the sums: 8 warps on a 128 x 64 tile halve each
# thread's share; added after the H200 runs, so the autotuner's choice among them is not yet measured)
_TILES = [(128, 128, 8, 8), (256, 64, 8, 8), (64, 256, 8, 8), (128, 64, 8, 8), (64, 128, 8, 8), (128, 64, 8, 4),
          (64, 128, 8, 4), (64, 64, 8, 4), (32, 32, 8, 4)]
# sizes are not specialised (each new value would compile every tile again); strides are (a unit stride matters)
_SIZES = ["N", "M", "K", "N_BUCKET"]


def triton_available() -> bool:
    """Whether Triton is importable."""
    return triton is not None


_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")  # read at import, as Triton


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1`` when this module was imported, as
    Triton reads it): fixed tiles, CPU tensors."""
    return _INTERPRETING


def triton_supported(*tensors: Tensor) -> bool:
    """Whether the Triton kernels take these tensors: CUDA (or CPU under ``TRITON_INTERPRET=1``), float32/16/bf16.

    The device is checked first: a CPU tensor (every decoding step on CPU asks) is turned away without more."""
    device = "cpu" if _INTERPRETING else "cuda"
    if triton is None or any(t.device.type != device for t in tensors):
        return False
    return enabled() and all(t.dtype in _DTYPES for t in tensors)


def quick_bench(kernel_call: Callable[[], None], quantiles) -> list:
    """The autotuners' timing: short (each new key, such as ``(N bucket, M, K)``, is tuned when training first meets
    it)."""
    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


if triton is not None:  # the kernels (module level: Triton resolves the helpers they call as globals)
    @triton.jit
    def _l1_steps(acc, x_cols, w_cols, k0, sxk, swk, row_ok, col_ok, CENTRED: tl.constexpr, COUNT: tl.constexpr):
        """``acc`` plus, for ``k0 <= k < k0 + COUNT``, ``-|x_k - w_k|`` (with ``CENTRED`` ``|x_k| - |x_k - w_k|``)."""
        if CENTRED:  # the chunk's terms are summed first, so acc only takes sums bounded by the chunk's sum of |w_k|
            x_col = tl.load(x_cols + k0 * sxk, mask=row_ok, other=0.0).to(tl.float32)
            w_col = tl.load(w_cols + k0 * swk, mask=col_ok, other=0.0).to(tl.float32)
            chunk = -tl.abs(x_col[:, None] - w_col[None, :])
            x_sum = tl.abs(x_col)
            for dk in tl.static_range(1, COUNT):
                x_col = tl.load(x_cols + (k0 + dk) * sxk, mask=row_ok, other=0.0).to(tl.float32)
                w_col = tl.load(w_cols + (k0 + dk) * swk, mask=col_ok, other=0.0).to(tl.float32)
                chunk -= tl.abs(x_col[:, None] - w_col[None, :])
                x_sum += tl.abs(x_col)
            acc += chunk + x_sum[:, None]
        else:
            for dk in tl.static_range(COUNT):
                x_col = tl.load(x_cols + (k0 + dk) * sxk, mask=row_ok, other=0.0).to(tl.float32)
                w_col = tl.load(w_cols + (k0 + dk) * swk, mask=col_ok, other=0.0).to(tl.float32)
                acc -= tl.abs(x_col[:, None] - w_col[None, :])
        return acc

    @triton.jit(do_not_specialize=_SIZES)
    def _forward_kernel(x_ptr, w_ptr, y_ptr, N, M, K, sxg, sxn, sxk, swg, swm, swk, syg, syn, sym, N_BUCKET,
                        CENTRED: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, UNROLL: tl.constexpr):
        group = tl.program_id(2)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok, col_ok = rows < N, cols < M
        x_cols = x_ptr + group * sxg + rows * sxn  # column k of the x tile: x_cols + k * sxk
        w_cols = w_ptr + group * swg + cols * swm
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        main = K - K % UNROLL
        for k0 in range(0, main, UNROLL):
            acc = _l1_steps(acc, x_cols, w_cols, k0, sxk, swk, row_ok, col_ok, CENTRED, UNROLL)
        for k in range(main, K):
            acc = _l1_steps(acc, x_cols, w_cols, k, sxk, swk, row_ok, col_ok, CENTRED, 1)
        tl.store(y_ptr + group * syg + rows[:, None] * syn + cols[None, :] * sym, acc,
                 mask=row_ok[:, None] & col_ok[None, :])

    @triton.jit
    def _slope_steps(acc, grad_sum, low, high, g_cols, w_rows, m0, sgm, swm, row_ok, k_ok, BOUNDS: tl.constexpr,
                     COUNT: tl.constexpr):
        """``grad_sum + sum_m g_m``, and ``acc + sum_m g_m * clamp(w_m, low, high)`` (``BOUNDS``) or ``acc + sum_m
        2 g_m * clamp(w_m / 2 + low, 0, 1)`` (``high`` unused); ``m0 <= m < m0 + COUNT``."""
        for dm in tl.static_range(COUNT):
            g_col = tl.load(g_cols + (m0 + dm) * sgm, mask=row_ok, other=0.0).to(tl.float32)
            w_row = tl.broadcast_to(tl.load(w_rows + (m0 + dm) * swm, mask=k_ok, other=0.0).to(tl.float32)[None, :],
                                    low.shape)
            if BOUNDS:
                acc += g_col[:, None] * tl.minimum(tl.maximum(w_row, low), high)
            else:
                acc += (2.0 * g_col)[:, None] * tl.minimum(tl.maximum(0.5 * w_row + low, 0.0), 1.0)
            grad_sum += g_col
        return acc, grad_sum

    @triton.jit(do_not_specialize=_SIZES)
    def _input_grad_kernel(g_ptr, x_ptr, w_ptr, w_range_ptr, dx_ptr, N, M, K, sgg, sgn, sgm, sxg, sxn, sxk, swg, swm,
                           swk, sdg, sdn, sdk, N_BUCKET, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
                           UNROLL: tl.constexpr, BOUNDS: tl.constexpr):
        # BLOCK_M is the tile's width along K (the autotuner's name for the second tile axis of both kernels)
        group = tl.program_id(2)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        ks = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok, k_ok = rows < N, ks < K
        tile_ok = row_ok[:, None] & k_ok[None, :]
        x = tl.load(x_ptr + group * sxg + rows[:, None] * sxn + ks[None, :] * sxk, mask=tile_ok,
                    other=0.0).to(tl.float32)
        if BOUNDS:  # clamp(w - x, -1, 1) = clamp(w, x' - 1, x' + 1) - x', x' = clamp(x, min_m w - 1, max_m w + 1)
            w_min = tl.load(w_range_ptr + (group * 2) * K + ks, mask=k_ok, other=0.0)
            w_max = tl.load(w_range_ptr + (group * 2 + 1) * K + ks, mask=k_ok, other=0.0)
            base = tl.minimum(tl.maximum(x, w_min[None, :] - 1.0), w_max[None, :] + 1.0)  # x'
            low, high = base - 1.0, base + 1.0
        else:  # clamp(w - x, -1, 1) = 2 clamp(w / 2 + low, 0, 1) - 1, low = 1/2 - x/2
            low = 0.5 - 0.5 * x
            high = low
            base = tl.full(x.shape, 1.0, tl.float32)
        # dx = sums - base * sum_m g
        g_cols = g_ptr + group * sgg + rows * sgn  # column m of g's row block: g_cols + m * sgm
        w_rows = w_ptr + group * swg + ks * swk
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        grad_sum = tl.zeros((BLOCK_N,), dtype=tl.float32)
        main = M - M % UNROLL
        for m0 in range(0, main, UNROLL):
            acc, grad_sum = _slope_steps(acc, grad_sum, low, high, g_cols, w_rows, m0, sgm, swm, row_ok, k_ok,
                                         BOUNDS, UNROLL)
        for m in range(main, M):
            acc, grad_sum = _slope_steps(acc, grad_sum, low, high, g_cols, w_rows, m, sgm, swm, row_ok, k_ok,
                                         BOUNDS, 1)
        tl.store(dx_ptr + group * sdg + rows[:, None] * sdn + ks[None, :] * sdk, acc - base * grad_sum[:, None],
                 mask=tile_ok)


@functools.lru_cache(maxsize=None)
def kernels() -> Dict[str, Callable]:
    """The kernels by name, autotuned on a GPU (an autotuner's ``cache`` maps each key to its chosen tile; plain
    under the interpreter)."""
    jitted = {"forward": _forward_kernel, "input_grad": _input_grad_kernel}
    if interpreting():
        return jitted
    tiles = [({"BLOCK_N": n, "BLOCK_M": m, "UNROLL": u}, w) for n, m, u, w in _TILES]
    configs = {"forward": [triton.Config(meta, num_warps=w) for meta, w in tiles],
               "input_grad": [triton.Config({**meta, "BOUNDS": bounds}, num_warps=w) for meta, w in tiles
                              for bounds in (False, True)]}
    return {name: triton.autotune(configs[name], key=["N_BUCKET", "M", "K"], do_bench=quick_bench)(kernel)
            for name, kernel in jitted.items()}


def _launch(name: str, grid: Callable[[dict], Tuple[int, int, int]], *args, **constants) -> None:
    kernel = kernels()[name]
    if interpreting():
        meta = {**_INTERPRETER_META, **_INTERPRETER_FORMS.get(name, {})}
        kernel[grid(meta)](*args, **constants, **meta)
    else:
        kernel[grid](*args, **constants)


def _columns_contiguous(t: Tensor) -> Tensor:
    """``t`` (G, R, C) with ``t[g, :, c]`` contiguous (a transposed copy unless it already is)."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def neg_l1(x: Tensor, weight: Tensor, centred: bool) -> Tensor:
    """``-sum_k |x[g, n, k] - w[g, m, k]|``, or with ``centred`` that minus its mean over ``m``.

    Shape: x (G, N, K), weight (G, M, K) -> (G, N, M), in x's dtype.
    """
    (groups, rows, length), cols = x.shape, weight.shape[1]
    x, weight = _columns_contiguous(x), _columns_contiguous(weight)
    total = torch.empty(groups, rows, cols, dtype=torch.float32, device=x.device)

    def grid(meta: dict) -> Tuple[int, int, int]:
        return triton.cdiv(rows, meta["BLOCK_N"]), triton.cdiv(cols, meta["BLOCK_M"]), groups

    _launch("forward", grid, x, weight, total, rows, cols, length, *x.stride(), *weight.stride(), *total.stride(),
            triton.next_power_of_2(rows), CENTRED=centred)
    if centred:
        total.sub_(total.mean(dim=-1, keepdim=True))
    return total.to(x.dtype)


def input_grad(grad: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``dx[g, n, k] = sum_m grad[g, n, m] * clamp(w[g, m, k] - x[g, n, k], -1, 1)``.

    Shape: grad (G, N, M), x (G, N, K), weight (G, M, K) -> (G, N, K), in x's dtype.
    """
    (groups, rows, length), cols = x.shape, weight.shape[1]
    grad = _columns_contiguous(grad)
    dx = torch.empty(groups, rows, length, dtype=torch.float32, device=x.device)
    w_range = torch.stack(torch.aminmax(weight, dim=1), dim=1).float().contiguous()  # (G, 2, K): min_m w, max_m w

    def grid(meta: dict) -> Tuple[int, int, int]:
        return triton.cdiv(rows, meta["BLOCK_N"]), triton.cdiv(length, meta["BLOCK_M"]), groups

    _launch("input_grad", grid, grad, x, weight, w_range, dx, rows, cols, length, *grad.stride(), *x.stride(),
            *weight.stride(), *dx.stride(), triton.next_power_of_2(rows))
    return dx.to(x.dtype)
