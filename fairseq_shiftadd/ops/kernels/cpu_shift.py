"""The DeepShift-PS weight on CPU in one pass each way (DeepShift, arXiv 1905.13298).

The loops of ``cpu_shift.cpp`` (compiled at first use, :mod:`.build`): :func:`clamped_ps_weight` clamps the stored
exponent and sign in place (to ``[lo, hi]`` and ``[-1, 1]``) and returns ``round(s) * 2**round(p)``, with
DeepShift-PS's straight-through backward ``dL/dp = g * w * ln 2``, ``dL/ds = g``. The same values, bit for bit, as
:func:`~fairseq_shiftadd.ops.shift.clamp_ps_` followed by :func:`~fairseq_shiftadd.ops.shift.ps_weight` (the reference
path and the fallback), which take about ten passes over the weight where these take one forward and one backward.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from .build import KERNEL_DTYPES, KernelLibrary, Signature

__all__ = ["ps_supported", "clamped_ps_weight"]

_SOURCE = Path(__file__).with_name("cpu_shift.cpp")
_SIGNATURES: dict[str, Signature] = {"ps_weight": (3, 3, 1), "ps_exponent_grad": (3, 1, 1)}  # pointers, sizes, threads
_KERNELS = KernelLibrary(_SOURCE, _SIGNATURES)


def ps_supported(exponent: Tensor, sign: Tensor) -> bool:
    """Whether the kernels take these parameters: CPU, one float32 / float64 dtype, contiguous, same shape."""
    return (exponent.dtype == sign.dtype and exponent.dtype in KERNEL_DTYPES and exponent.shape == sign.shape
            and exponent.is_contiguous() and sign.is_contiguous() and _KERNELS.supports(exponent, sign))


class _ClampedPSWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, exponent: Tensor, sign: Tensor, low: int, high: int) -> Tensor:
        weight = torch.empty_like(exponent)
        _KERNELS.call("ps_weight", exponent, sign, weight, exponent.numel(), low, high)
        for parameter in (exponent, sign):  # changed in place, as clamp_ would have: say so to autograd and caches
            torch.autograd.graph.increment_version(parameter)
        ctx.save_for_backward(weight)
        return weight

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:
        (weight,) = ctx.saved_tensors
        exponent_grad = None
        if ctx.needs_input_grad[0]:
            grad = grad.contiguous()
            exponent_grad = torch.empty_like(weight)
            _KERNELS.call("ps_exponent_grad", grad, weight, exponent_grad, weight.numel())
        return exponent_grad, grad if ctx.needs_input_grad[1] else None, None, None


def clamped_ps_weight(exponent: Tensor, sign: Tensor, low: int, high: int) -> Tensor:
    """Clamp ``exponent`` to ``[low, high]`` and ``sign`` to ``[-1, 1]`` in place; return ``round(sign) *
    2**round(exponent)`` with DeepShift-PS's backward. Shape: exponent, sign (same, contiguous) -> same."""
    return _ClampedPSWeight.apply(exponent, sign, low, high)
