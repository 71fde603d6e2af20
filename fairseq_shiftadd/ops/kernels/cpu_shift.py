"""Shift layers on CPU (DeepShift, arXiv 1905.13298), without autograd: the DeepShift-PS weight in one pass each
way, DeepShift-Q's rounding in one pass, and the linear layer of a power-of-two weight read from one byte per weight.

The loops of ``cpu_shift.cpp`` (compiled at first use, :mod:`.build`). The two halves of
:func:`~fairseq_shiftadd.ops.shift.clamped_ps_weight` (whose autograd function calls them):

* :func:`clamped_ps_weight_` clamps the stored exponent and sign in place (to ``[low, high]`` and ``[-1, 1]``) and
  returns ``round(s) * 2**round(p)``;
* :func:`ps_exponent_grad` is DeepShift-PS's exponent gradient ``g * w * ln 2``.

The same values, bit for bit, as :func:`~fairseq_shiftadd.ops.shift.clamp_ps_` followed by the reference
computation of :func:`~fairseq_shiftadd.ops.shift.ps_weight`, which takes about ten passes over the weight where
these take one forward and one backward. And :func:`round_pow2`, DeepShift-Q's rounding
:func:`~fairseq_shiftadd.ops.shift.round_pow2_ste` computed from the bits of each weight, the same values bit for bit
as its reference (about nine passes, a ``frexp`` among them) where this takes one.

The packed linear layer (:func:`~fairseq_shiftadd.ops.shift.pow2_linear`'s fast path at inference):

* :func:`pow2_codes` packs a weight whose entries are all ``0`` or ``+-2**p`` (``-126 <= p <= 0``, every
  ``weight_bits`` of a shift layer) into one byte per weight: the float32 sign bit and exponent field, ``0`` for
  zero; any other value (a NaN, ``2.0``, ``0.3``) and it declines;
* :func:`pow2_linear` computes ``y = x w^T + b`` from the codes, exactly the products of ``F.linear`` with the
  float weight (summed in another order). At a decoding step's few rows a linear layer's time goes into reading
  its weight, a quarter of float32's bytes here; past :data:`PACKED_MAX_ROWS` rows the float GEMM is faster, and
  so it is for weights small enough to stay in a core's cache (below :data:`PACKED_MIN_WEIGHTS`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from .build import KERNEL_DTYPES, KernelLibrary, Signature

__all__ = ["elementwise_supported", "clamped_ps_weight_", "ps_exponent_grad", "round_pow2", "PACKED_MAX_ROWS",
           "PACKED_MIN_WEIGHTS", "pow2_codes", "packed_supported", "pow2_linear"]

_SOURCE = Path(__file__).with_name("cpu_shift.cpp")
_SIGNATURES: dict[str, Signature] = {  # pointers, sizes, threads
    "ps_weight": (3, 3, 1), "ps_exponent_grad": (3, 1, 1), "round_pow2": (2, 4, 1), "pow2_linear": (4, 6, 1),
}
_KERNELS = KernelLibrary(_SOURCE, _SIGNATURES)


def elementwise_supported(*tensors: Tensor) -> bool:
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


_FLOAT_FIELDS = {torch.float32: (torch.int32, 23), torch.float64: (torch.int64, 52)}  # bits viewed as, mantissa bits


def round_pow2(weight: Tensor, low: int, high: int, threshold: float) -> Tensor:
    """``sign(w) * 2**clamp(p, low, high)`` with ``p = e - 1 + [|m| >= threshold]`` for ``w = m * 2**e``
    (``|m|`` in ``[0.5, 1)``, as ``torch.frexp``), i.e. ``round(log2|w|)`` when ``threshold`` is the least value of
    the weight's dtype at or above ``1/sqrt(2)`` (:func:`~fairseq_shiftadd.ops.shift.round_pow2_ste`, the owner of
    that rule). A zero gives ``+0``, a NaN stays NaN. Shape: any -> same."""
    integer, mantissa_bits = _FLOAT_FIELDS[weight.dtype]
    mantissa = int(torch.tensor(threshold, dtype=weight.dtype).view(integer)) & ((1 << mantissa_bits) - 1)
    out = torch.empty_like(weight)
    _KERNELS.call("round_pow2", weight, out, weight.numel(), low, high, mantissa)
    return out


PACKED_MAX_ROWS = 32
"""Most rows of ``x`` that :func:`pow2_linear` takes. Measured on a 2-core Xeon (one thread, ``2048 x 512``
weights, against ``F.linear`` with the float weight): 0.3-0.4x at 1-8 rows, 0.6x at 16, 0.8-0.9x at 32, 1.0-1.2x at
64; at ``512 x 512``, a float weight that stays in the L2 cache when timed alone, 0.8-1.2x up to 32 rows."""

PACKED_MIN_WEIGHTS = 1 << 18
"""Fewest weights (``K * M``; 1 MiB of float32) that :func:`pow2_linear` takes. Measured as above at 5 rows:
``F.linear`` 1.06-1.25x faster at ``512 x 128`` and ``128 x 512``, whose float weights stay in cache when timed
alone; from ``512 x 512`` on the codes win inside a decoding step (``benchmarks/ops.py``, the shift-add step)."""

_SIGN_AND_EXPONENT = ~(1 << 30)  # the float32 bits of a decoded code: bit 30 cleared (see cpu_shift.cpp)
_PANEL = 64  # output columns per panel of codes: the kernel's register block of float32 sums (4 vectors of 16 with
# AVX-512), or a multiple of it (2 vectors of 8 with AVX2)


def pow2_codes(weight: Tensor) -> Optional[Tensor]:
    """The packed codes of a weight of signed powers of two; None unless every entry is ``0`` or ``+-2**p`` with
    ``-126 <= p <= 0`` (and the weight a CPU float32 / float64 matrix).

    Code byte: the float32 sign bit, then its 8-bit exponent field ``E`` (``|w| = 2**(E - 127)``); ``0`` for zero.
    Stored in panels of 64 output columns, each panel k-major and contiguous (``codes[p, k, j]`` is the code of
    ``weight[64 p + j, k]``; zeros past the last column), the order in which the kernel streams them.
    Shape: weight (M, K) -> codes (ceil(M / 64), K, 64), int8.
    """
    if weight.dim() != 2 or weight.device.type != "cpu" or weight.dtype not in KERNEL_DTYPES:
        return None
    bits = weight.float().view(torch.int32)
    codes = ((bits >> 23) & 0xFF) | ((bits >> 24) & 0x80)
    codes = codes.masked_fill_(weight == 0, 0).to(torch.uint8).view(torch.int8)
    decoded = ((codes.to(torch.int32) << 23) & _SIGN_AND_EXPONENT).view(torch.float32)
    if not torch.equal(decoded.to(weight.dtype), weight):  # anything but 0 and +-2**p, p in [-126, 0]
        return None
    (m, k), panels = weight.shape, -(-weight.size(0) // _PANEL)
    padded = codes.new_zeros(panels * _PANEL, k)
    padded[:m] = codes
    return padded.view(panels, _PANEL, k).transpose(1, 2).contiguous()


def packed_supported(x: Tensor, bias: Optional[Tensor], out_features: int) -> bool:
    """Whether :func:`pow2_linear` takes these: float32 / float64 ``x`` (and ``bias``) with at most
    :data:`PACKED_MAX_ROWS` rows, a weight of at least :data:`PACKED_MIN_WEIGHTS`, and the kernels' own conditions
    (:meth:`~.build.KernelLibrary.supports`: on, built, CPU)."""
    k = x.shape[-1]
    return (x.dtype in KERNEL_DTYPES and k * out_features >= PACKED_MIN_WEIGHTS and x.numel() <= PACKED_MAX_ROWS * k
            and (bias is None or bias.dtype == x.dtype) and _KERNELS.supports(x))


def pow2_linear(x: Tensor, codes: Tensor, bias: Optional[Tensor], out_features: int) -> Tensor:
    """``x w^T + b`` with ``w`` the front ``(out_features, K)`` block of the ``(M', K')`` weight that ``codes`` pack
    (:func:`pow2_codes`, read in place: the block's panels are the first ones, its rows their first rows), without
    autograd.

    Shape: x (*, K), codes (ceil(M' / 64), K', 64) with K' >= K and M' >= out_features, bias (out_features,) or None
    -> (*, out_features).
    """
    if not x.is_contiguous():
        x = x.contiguous()
    k = x.shape[-1]
    y = x.new_empty(*x.shape[:-1], out_features)
    _KERNELS.call("pow2_linear", x, codes, 0 if bias is None else bias.contiguous(), y, x.numel() // k, k,
                  out_features, k, codes.size(2), codes.stride(0))
    return y
