"""Triton kernels of the adder layer's negative-L1 products for CUDA tensors (AdderNet, arXiv 1912.13200).

Used for CUDA tensors when Triton is importable (the ``gpu`` extra); the tiled PyTorch code in
:mod:`fairseq_shiftadd.ops.adder` stays the reference and the fallback. Same contracts as :mod:`.cpu_adder`:

* :func:`neg_l1` — ``y[g, n, m] = -sum_k |x - w|``, or with ``centred`` the row-centred form from the
  per-element terms ``|x| - |x - w|`` (each bounded by ``|w|``), then minus the row mean;
* :func:`input_grad` — ``dx[g, n, k] = sum_m g[g, n, m] * clamp(w[g, m, k] - x[g, n, k], -1, 1)``.

The third product, the weight gradient ``g^T x - w * sum_n g``, is two matmuls (cuBLAS, in
:func:`~fairseq_shiftadd.ops.adder.add_matmul`'s backward). Each program owns an output tile
(``BLOCK_N x BLOCK_M`` of y, or ``BLOCK_N x BLOCK_K`` of dx) and loops over the reduced axis in blocks,
loading float32 / float16 / bfloat16 operands and accumulating in float32; the only temporaries are the
tile's ``BLOCK_N x BLOCK_M x BLOCK_K`` registers, so memory stays ``O(NK + MK + NM)``. Tile sizes are
autotuned per ``(N, M, K)`` on a GPU. Ragged edges are masked (loads read zeros, which add nothing).

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

__all__ = ["triton_available", "triton_supported", "neg_l1", "input_grad"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# the fixed configuration of the interpreter (and the smallest of the autotuned ones)
_INTERPRETER_META = {"BLOCK_N": 16, "BLOCK_M": 16, "BLOCK_K": 8}
_TILES = [(32, 32, 8), (64, 32, 8), (32, 64, 8), (64, 64, 4), (128, 64, 4), (16, 16, 8)]


def triton_available() -> bool:
    """Whether Triton is importable."""
    return triton is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")


def triton_supported(*tensors: Tensor) -> bool:
    """Whether the Triton kernels take these tensors: CUDA (or CPU under ``TRITON_INTERPRET=1``), float32/16/bf16."""
    if triton is None or not enabled() or any(t.dtype not in _DTYPES for t in tensors):
        return False
    device = "cpu" if _interpreting() else "cuda"
    return all(t.device.type == device for t in tensors)


@functools.lru_cache(maxsize=None)
def _kernels() -> Dict[str, Callable]:
    """The jitted kernels (autotuned on a GPU), built at first use."""

    @triton.jit
    def forward_kernel(x_ptr, w_ptr, y_ptr, N, M, K, sxg, sxn, sxk, swg, swm, swk, syg, syn, sym,
                       CENTRED: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
        group = tl.program_id(2)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_ptr + group * sxg + rows[:, None] * sxn + ks[None, :] * sxk,
                        mask=(rows[:, None] < N) & (ks[None, :] < K), other=0.0).to(tl.float32)
            w = tl.load(w_ptr + group * swg + cols[:, None] * swm + ks[None, :] * swk,
                        mask=(cols[:, None] < M) & (ks[None, :] < K), other=0.0).to(tl.float32)
            distance = tl.abs(x[:, None, :] - w[None, :, :])
            if CENTRED:
                acc += tl.sum(tl.abs(x)[:, None, :] - distance, axis=2)
            else:
                acc -= tl.sum(distance, axis=2)
        tl.store(y_ptr + group * syg + rows[:, None] * syn + cols[None, :] * sym, acc,
                 mask=(rows[:, None] < N) & (cols[None, :] < M))

    @triton.jit
    def input_grad_kernel(g_ptr, x_ptr, w_ptr, dx_ptr, N, M, K, sgg, sgn, sgm, sxg, sxn, sxk, swg, swm, swk,
                          sdg, sdn, sdk, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
        group = tl.program_id(2)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        ks = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + group * sxg + rows[:, None] * sxn + ks[None, :] * sxk,
                    mask=(rows[:, None] < N) & (ks[None, :] < K), other=0.0).to(tl.float32)
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for m0 in range(0, M, BLOCK_M):
            cols = m0 + tl.arange(0, BLOCK_M)
            grad = tl.load(g_ptr + group * sgg + rows[:, None] * sgn + cols[None, :] * sgm,
                           mask=(rows[:, None] < N) & (cols[None, :] < M), other=0.0).to(tl.float32)
            w = tl.load(w_ptr + group * swg + cols[:, None] * swm + ks[None, :] * swk,
                        mask=(cols[:, None] < M) & (ks[None, :] < K), other=0.0).to(tl.float32)
            slope = tl.minimum(tl.maximum(w[None, :, :] - x[:, None, :], -1.0), 1.0)
            acc += tl.sum(grad[:, :, None] * slope, axis=1)
        tl.store(dx_ptr + group * sdg + rows[:, None] * sdn + ks[None, :] * sdk, acc,
                 mask=(rows[:, None] < N) & (ks[None, :] < K))

    kernels = {"forward": forward_kernel, "input_grad": input_grad_kernel}
    if _interpreting():
        return kernels
    configs = [triton.Config({"BLOCK_N": n, "BLOCK_M": m, "BLOCK_K": k}, num_warps=4) for n, m, k in _TILES]
    return {name: triton.autotune(configs, key=["N", "M", "K"])(kernel) for name, kernel in kernels.items()}


def _launch(name: str, grid: Callable[[dict], Tuple[int, int, int]], *args, **constants) -> None:
    kernel = _kernels()[name]
    if _interpreting():
        kernel[grid(_INTERPRETER_META)](*args, **constants, **_INTERPRETER_META)
    else:
        kernel[grid](*args, **constants)


def neg_l1(x: Tensor, weight: Tensor, centred: bool) -> Tensor:
    """``-sum_k |x[g, n, k] - w[g, m, k]|``, or with ``centred`` that minus its mean over ``m``.

    Shape: x (G, N, K), weight (G, M, K) -> (G, N, M), in x's dtype.
    """
    (groups, rows, length), cols = x.shape, weight.shape[1]
    total = torch.empty(groups, rows, cols, dtype=torch.float32, device=x.device)

    def grid(meta: dict) -> Tuple[int, int, int]:
        return triton.cdiv(rows, meta["BLOCK_N"]), triton.cdiv(cols, meta["BLOCK_M"]), groups

    _launch("forward", grid, x, weight, total, rows, cols, length, *x.stride(), *weight.stride(), *total.stride(),
            CENTRED=centred)
    if centred:
        total.sub_(total.mean(dim=-1, keepdim=True))
    return total.to(x.dtype)


def input_grad(grad: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``dx[g, n, k] = sum_m grad[g, n, m] * clamp(w[g, m, k] - x[g, n, k], -1, 1)``.

    Shape: grad (G, N, M), x (G, N, K), weight (G, M, K) -> (G, N, K), in x's dtype.
    """
    (groups, rows, length), cols = x.shape, weight.shape[1]
    dx = torch.empty(groups, rows, length, dtype=torch.float32, device=x.device)

    def grid(meta: dict) -> Tuple[int, int, int]:
        return triton.cdiv(rows, meta["BLOCK_N"]), triton.cdiv(length, meta["BLOCK_K"]), groups

    _launch("input_grad", grid, grad, x, weight, dx, rows, cols, length, *grad.stride(), *x.stride(),
            *weight.stride(), *dx.stride())
    return dx.to(x.dtype)
