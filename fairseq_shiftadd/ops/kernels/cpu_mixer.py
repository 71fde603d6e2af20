"""The lightweight add and conv mixers on CPU, on the models' time-major layout (AdderNet, arXiv 1912.13200).

The loops of ``cpu_mixer.cpp`` (compiled at first use, :mod:`.build`) on ``x (T, B, C)`` and the head-shared
kernel ``w (H, K)``, channel ``c`` in head ``h(c) = c // (C / H)``, with ``x`` zero outside ``[0, T)`` (``left``
zeros before the sequence, ``K - 1 - left`` after it):

* ``y[t, b, c] = -sum_j |x[t + j - left, b, c] - w[h(c), j]|``;
* ``dx[s, b, c] = sum_j g[s - j + left, b, c] * clamp(w[h(c), j] - x[s, b, c], -1, 1)`` (HardTanh surrogate);
* ``dw[h, j] = sum_{c in h} (p[j, c] - w[h, j] * sum_{t, b} g[t, b, c])`` with ``p`` the kernel's ``g^T x``
  (``p[j, c] = sum_{t, b} g[t, b, c] x[t + j - left, b, c]``), then the caller's adaptive scaling
  (:func:`~fairseq_shiftadd.ops.adder.scale_weight_grad`, passed in as ``scale``);
* :func:`product_mix`, the product (conv) mixer: ``y[t, b, c] = sum_j x[t + j - left, b, c] * w[h(c), j]``, with its
  true gradients: ``dx`` is the same sum over ``g`` with the kernel reversed and ``K - 1 - left`` zeros before
  (``dx[s] = sum_j g[s - j + left] w[j]``), ``dw[h, j] = sum_{c in h} p[j, c]``. ``O(T K)`` per channel where
  fairseq's band-matrix product is ``O(T^2)``;
* :func:`mix_window`, a decoding step: ``y[b, c] = -sum_j |window[j, b, c] - w[h(c), j]|`` (no autograd); the
  same window read for the product mixer, ``y[b, c] = sum_j window[j, b, c] * w[h(c), j]``.

The same formulas as :func:`~fairseq_shiftadd.ops.lightconv.mix_windows` on unfolded windows (the reference
path and the fallback), read in place: no padded copy, no transposes, channels contiguous in every operand.
Half inputs are computed in float32 and rounded back. Temporaries ``O(K C)`` besides the operands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from ..kinds import OpKind
from .build import KERNEL_DTYPES, GradScale, KernelLibrary, Signature

__all__ = ["mixer_supported", "add_mix", "product_mix", "mix_window"]

_SOURCE = Path(__file__).with_name("cpu_mixer.cpp")
_SIGNATURES: dict[str, Signature] = {  # pointers, then T, B, C, K, left, H, then threads
    "mixer_forward": (3, 6, 1), "mixer_product": (3, 6, 1), "mixer_input_grad": (4, 6, 1),
    "mixer_weight_product": (4, 6, 1),
    "mixer_window": (3, 6, 1), "mixer_window_product": (3, 6, 1),
}


_KERNELS = KernelLibrary(_SOURCE, _SIGNATURES)
_WINDOW_KERNELS = {OpKind.ADD: "mixer_window", OpKind.MULT: "mixer_window_product"}


def mixer_supported(*tensors: Tensor) -> bool:
    """Whether the mixer kernels take these tensors (:meth:`~.build.KernelLibrary.supports`)."""
    return _KERNELS.supports(*tensors)


def _sequence(x: Tensor, kernel: Tensor, left: int) -> Tuple[int, ...]:
    """The kernels' size arguments: T, B, C, K, left, H."""
    (length, batch, channels), (heads, taps) = x.shape, kernel.shape
    return length, batch, channels, taps, left, heads


def _mixed(name: str, x: Tensor, kernel: Tensor, left: int) -> Tensor:
    """The forward kernel ``name`` (``mixer_forward`` or ``mixer_product``) on contiguous ``x``, ``kernel``."""
    y = torch.empty_like(x)
    _KERNELS.call(name, x, kernel, y, *_sequence(x, kernel, left))
    return y


def _head_product(grad: Tensor, x: Tensor, kernel: Tensor, left: int,
                  grad_sum: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """``P[h, j] = sum_{c in h} p[j, c]``, the kernel's ``g^T x`` (``p``: the weight product), and with ``grad_sum``
    ``S[h] = sum_{t, b, c in h} g[t, b, c]``, summed in the same pass over ``g``. Shape: (H, K), (H,) or None."""
    (heads, taps), channels = kernel.shape, x.size(2)
    per_channel = x.new_empty(taps, channels)  # p (K, C)
    sums = x.new_empty(channels) if grad_sum else None  # sum_{t, b} g[t, b, c]
    _KERNELS.call("mixer_weight_product", grad, x, per_channel, 0 if sums is None else sums,
                  *_sequence(x, kernel, left))
    product = per_channel.view(taps, heads, channels // heads).sum(dim=2).t()
    return product, None if sums is None else sums.view(heads, -1).sum(dim=1)


class _AddMix(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, kernel: Tensor, left: int, scale: GradScale) -> Tensor:
        x, kernel = x.contiguous(), kernel.contiguous()
        ctx.save_for_backward(x, kernel)
        ctx.left, ctx.scale = left, scale
        return _mixed("mixer_forward", x, kernel, left)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:
        x, kernel = ctx.saved_tensors
        grad = grad.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty_like(x)
            _KERNELS.call("mixer_input_grad", grad, x, kernel, dx, *_sequence(x, kernel, ctx.left))
        if ctx.needs_input_grad[1]:
            product, grad_sum = _head_product(grad, x, kernel, ctx.left, grad_sum=True)
            dw = ctx.scale(product - kernel * grad_sum[:, None], product)
        return dx, dw, None, None


class _ProductMix(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, kernel: Tensor, left: int) -> Tensor:
        x, kernel = x.contiguous(), kernel.contiguous()
        ctx.save_for_backward(x, kernel)
        ctx.left = left
        return _mixed("mixer_product", x, kernel, left)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None]:
        x, kernel = ctx.saved_tensors
        grad = grad.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[0]:  # dx[s] = sum_j g[s - j + left] w[j] = sum_i g[s + i - (K - 1 - left)] w[K - 1 - i]
            dx = _mixed("mixer_product", grad, kernel.flip(1).contiguous(), kernel.size(1) - 1 - ctx.left)
        if ctx.needs_input_grad[1]:
            dw, _ = _head_product(grad, x, kernel, ctx.left)
        return dx, dw, None


def _in_kernel_dtype(function: Callable[..., Tensor], x: Tensor, kernel: Tensor, *args: Any) -> Tensor:
    """``function(x, kernel, *args)`` in float32 / float64 (half inputs computed in float32), in ``x``'s dtype."""
    dtype = x.dtype if x.dtype in KERNEL_DTYPES else torch.float32
    return function(x.to(dtype), kernel.to(dtype), *args).to(x.dtype)


def add_mix(x: Tensor, kernel: Tensor, left: int, scale: GradScale) -> Tensor:
    """The lightweight add mixer's sums, zero-padded by ``left`` before the sequence (see the module docstring).

    ``scale(dw, p)`` rescales the kernel gradient ``dw`` given ``p = g^T x`` (both ``(H, K)``).

    Shape: x (T, B, C), kernel (H, K) with H dividing C, ``0 <= left < K`` -> (T, B, C), in x's dtype.
    """
    return _in_kernel_dtype(_AddMix.apply, x, kernel, left, scale)


def product_mix(x: Tensor, kernel: Tensor, left: int) -> Tensor:
    """The lightweight conv (product) mixer's sums, zero-padded by ``left`` before the sequence, true gradients (see
    the module docstring). Shape: x (T, B, C), kernel (H, K) with H dividing C, ``0 <= left < K`` -> (T, B, C), in
    x's dtype.
    """
    return _in_kernel_dtype(_ProductMix.apply, x, kernel, left)


def mix_window(window: Tensor, kernel: Tensor, op: OpKind) -> Tensor:
    """The newest output of a causal mixer from the window of its last ``K`` inputs, without autograd.

    ``y[b, c] = -sum_j |window[j, b, c] - kernel[h(c), j]|`` (``ADD``) or ``sum_j window[j, b, c] * kernel[h(c), j]``
    (``MULT``): the forward at the window's last position, read in place, the taps summed in order.
    Shape: window (K, B, C), kernel (H, K) with H dividing C -> (B, C), in window's dtype.
    """
    name = _WINDOW_KERNELS[op]
    (taps, batch, channels), source = window.shape, window.dtype
    dtype = source if source in KERNEL_DTYPES else torch.float32
    if source != dtype or kernel.dtype != dtype:  # (a no-op `.to` costs as much as a small window's sums)
        window, kernel = window.to(dtype), kernel.to(dtype)
    window, kernel = window.contiguous(), kernel.contiguous()
    y = window.new_empty(batch, channels)
    _KERNELS.call(name, window, kernel, y, taps, batch, channels, taps, 0, kernel.size(0))
    return y if source == dtype else y.to(source)
