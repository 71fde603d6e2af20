"""The lightweight add mixer on CPU, on the models' time-major layout (AdderNet, arXiv 1912.13200).

The loops of ``cpu_mixer.cpp`` (compiled at first use, :mod:`.build`) on ``x (T, B, C)`` and the head-shared
kernel ``w (H, K)``, channel ``c`` in head ``h(c) = c // (C / H)``, with ``x`` zero outside ``[0, T)`` (``left``
zeros before the sequence, ``K - 1 - left`` after it):

* ``y[t, b, c] = -sum_j |x[t + j - left, b, c] - w[h(c), j]|``;
* ``dx[s, b, c] = sum_j g[s - j + left, b, c] * clamp(w[h(c), j] - x[s, b, c], -1, 1)`` (HardTanh surrogate);
* ``dw[h, j] = sum_{c in h} (p[j, c] - w[h, j] * sum_{t, b} g[t, b, c])`` with ``p`` the kernel's ``g^T x``
  (``p[j, c] = sum_{t, b} g[t, b, c] x[t + j - left, b, c]``), then the caller's adaptive scaling
  (:func:`~fairseq_shiftadd.ops.adder.scale_weight_grad`, passed in as ``scale``);
* :func:`mix_window`, a decoding step: ``y[b, c] = -sum_j |window[j, b, c] - w[h(c), j]|`` (no autograd); the
  same window read for the product mixer, ``y[b, c] = sum_j window[j, b, c] * w[h(c), j]``.

The same formulas as :func:`~fairseq_shiftadd.ops.lightconv.mix_windows` on unfolded windows (the reference
path and the fallback), read in place: no padded copy, no transposes, channels contiguous in every operand.
Half inputs are computed in float32 and rounded back. Temporaries ``O(K C)`` besides the operands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from ..kinds import OpKind
from .build import KERNEL_DTYPES, GradScale, KernelLibrary, Signature

__all__ = ["mixer_supported", "add_mix", "mix_window"]

_SOURCE = Path(__file__).with_name("cpu_mixer.cpp")
_SIGNATURES: dict[str, Signature] = {  # pointers, then T, B, C, K, left, H, then threads
    "mixer_forward": (3, 6, 1), "mixer_input_grad": (4, 6, 1), "mixer_weight_product": (3, 6, 1),
    "mixer_window": (3, 6, 1), "mixer_window_product": (3, 6, 1),
}


_KERNELS = KernelLibrary(_SOURCE, _SIGNATURES)
_WINDOW_KERNELS = {OpKind.ADD: "mixer_window", OpKind.MULT: "mixer_window_product"}


def mixer_supported(*tensors: Tensor) -> bool:
    """Whether the mixer kernels take these tensors (:meth:`~.build.KernelLibrary.supports`)."""
    return _KERNELS.supports(*tensors)



class _AddMix(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, kernel: Tensor, left: int, scale: GradScale) -> Tensor:
        x, kernel = x.contiguous(), kernel.contiguous()
        (length, batch, channels), (heads, taps) = x.shape, kernel.shape
        sequence = (length, batch, channels, taps, left, heads)
        y = torch.empty_like(x)
        _KERNELS.call("mixer_forward", x, kernel, y, *sequence)
        ctx.save_for_backward(x, kernel)
        ctx.sequence, ctx.scale = sequence, scale
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:
        x, kernel = ctx.saved_tensors
        grad = grad.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty_like(x)
            _KERNELS.call("mixer_input_grad", grad, x, kernel, dx, *ctx.sequence)
        if ctx.needs_input_grad[1]:
            (heads, taps), channels = kernel.shape, x.size(2)
            per_channel = x.new_empty(taps, channels)  # p (K, C)
            _KERNELS.call("mixer_weight_product", grad, x, per_channel, *ctx.sequence)
            product = per_channel.view(-1, heads, channels // heads).sum(dim=2).t()  # (H, K)
            grad_sum = grad.sum(dim=(0, 1)).view(heads, channels // heads).sum(dim=1)
            dw = ctx.scale(product - kernel * grad_sum[:, None], product)
        return dx, dw, None, None


def add_mix(x: Tensor, kernel: Tensor, left: int, scale: GradScale) -> Tensor:
    """The lightweight add mixer's sums, zero-padded by ``left`` before the sequence (see the module docstring).

    ``scale(dw, p)`` rescales the kernel gradient ``dw`` given ``p = g^T x`` (both ``(H, K)``).

    Shape: x (T, B, C), kernel (H, K) with H dividing C, ``0 <= left < K`` -> (T, B, C), in x's dtype.
    """
    dtype = x.dtype if x.dtype in KERNEL_DTYPES else torch.float32
    return _AddMix.apply(x.to(dtype), kernel.to(dtype), left, scale).to(x.dtype)


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
