"""The DeepShift-PS weight on CPU in one pass each way (DeepShift, arXiv 1905.13298), without autograd.

The loops of ``cpu_shift.cpp`` (compiled at first use, :mod:`.build`), the two halves of
:func:`~fairseq_shiftadd.ops.shift.clamped_ps_weight` (whose autograd function calls them):

* :func:`clamped_ps_weight_` clamps the stored exponent and sign in place (to ``[low, high]`` and ``[-1, 1]``) and
  returns ``round(s) * 2**round(p)``;
* :func:`ps_exponent_grad` is DeepShift-PS's exponent gradient ``g * w * ln 2``.

The same values, bit for bit, as :func:`~fairseq_shiftadd.ops.shift.clamp_ps_` followed by the reference
computation of :func:`~fairseq_shiftadd.ops.shift.ps_weight`, which takes about ten passes over the weight where
these take one forward and one backward.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .build import KERNEL_DTYPES, KernelLibrary, Signature

__all__ = ["ps_supported", "clamped_ps_weight_", "ps_exponent_grad"]

_SOURCE = Path(__file__).with_name("cpu_shift.cpp")
_SIGNATURES: dict[str, Signature] = {"ps_weight": (3, 3, 1), "ps_exponent_grad": (3, 1, 1)}  # pointers, sizes, threads
_KERNELS = KernelLibrary(_SOURCE, _SIGNATURES)


def ps_supported(*tensors: Tensor) -> bool:
    """Whether the kernels take these tensors: CPU, one float32 / float64 dtype, one shape, contiguous."""
    first = tensors[0]
    return (first.dtype in KERNEL_DTYPES and all(t.dtype == first.dtype and t.shape == first.shape
                                                 and t.is_contiguous() for t in tensors)
            and _KERNELS.supports(*tensors))


def clamped_ps_weight_(exponent: Tensor, sign: Tensor, low: int, high: int) -> Tensor:
    """Clamp ``exponent`` to ``[low, high]`` and ``sign`` to ``[-1, 1]`` in place (their versions move, as with
    ``clamp_``); return ``round(sign) * 2**round(exponent)``. Shape: exponent, sign (same) -> same."""
    weight = torch.empty_like(exponent)
    _KERNELS.call("ps_weight", exponent, sign, weight, exponent.numel(), low, high)
    for parameter in (exponent, sign):
        torch.autograd.graph.increment_version(parameter)
    return weight


def ps_exponent_grad(grad: Tensor, weight: Tensor) -> Tensor:
    """``(grad * weight) * ln 2``. Shape: grad, weight (same) -> same."""
    out = torch.empty_like(weight)
    _KERNELS.call("ps_exponent_grad", grad, weight, out, weight.numel())
    return out
