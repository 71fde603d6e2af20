"""Which fast path computes an adder product (or a shift weight): Triton (CUDA tensors), the compiled CPU kernels,
or none.

The operators' functional cores ask here; ``None`` means "use the reference path". Per product:

* :func:`neg_l1`, :func:`input_grad` — :func:`~fairseq_shiftadd.ops.adder.add_matmul`'s forward and input gradient
  (:mod:`.triton_adder`, :mod:`.cpu_adder`; :func:`prepare_neg_l1`, the CPU forward's weight-only work, kept by
  callers at inference);
* :func:`depthwise_add_conv` — a depthwise :class:`~fairseq_shiftadd.ops.adder.AddConv2d` with its backward
  (:mod:`.triton_depthwise` on a channels-last view, :mod:`.cpu_depthwise` on a padded copy);
* :func:`add_mix`, :func:`mix_window` — the lightweight add mixers over a sequence and a decoding step's window
  (:mod:`.triton_depthwise` on the time-major layout seen as ``(B, C, T, 1)``, :mod:`.cpu_mixer`; the product
  mixer's window on :mod:`.cpu_mixer` too), and :func:`product_mix`, the product mixer over a sequence on CPU
  (:mod:`.cpu_mixer`; a GPU runs fairseq's band-matrix product, one batched GEMM);
* :func:`clamped_ps_weight_`, :func:`ps_exponent_grad` — the DeepShift-PS weight with its in-place clamping, and
  its exponent gradient (:mod:`.cpu_shift`);
* :func:`pow2_codes`, :func:`pow2_linear` — a shift layer's linear at inference on a few rows, from one byte per
  weight (:mod:`.cpu_shift`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..kinds import OpKind
from ..validate import Conv2dGeometry
from . import cpu_adder, cpu_depthwise, cpu_mixer, cpu_shift, triton_adder, triton_depthwise
from .build import GradScale

__all__ = ["prepare_neg_l1", "neg_l1", "input_grad", "depthwise_add_conv", "add_mix", "product_mix", "mix_window",
           "clamped_ps_weight_", "ps_exponent_grad", "round_pow2", "pow2_codes", "pow2_linear"]


def prepare_neg_l1(weight: Tensor, centred: bool) -> Optional[cpu_adder.PreparedWeight]:
    """:func:`.cpu_adder.prepare`: what :func:`neg_l1` would derive from ``weight`` alone on the CPU kernel, for a
    caller to keep while the weight does not change; None where no fast path would use it."""
    if cpu_adder.cpu_supported(weight) and not triton_adder.triton_supported(weight):
        return cpu_adder.prepare(weight, centred)
    return None


def neg_l1(x: Tensor, weight: Tensor, centred: bool,
           prepared: Optional[cpu_adder.PreparedWeight] = None) -> Optional[Tensor]:
    """:func:`.cpu_adder.neg_l1` (given :func:`prepare_neg_l1` of ``weight`` where the caller keeps it) or
    :func:`.triton_adder.neg_l1` where one supports the tensors, else None."""
    if triton_adder.triton_supported(x, weight):
        return triton_adder.neg_l1(x, weight, centred)
    if cpu_adder.cpu_supported(x, weight):
        return cpu_adder.neg_l1(x, weight, centred, prepared)
    return None


def input_grad(grad: Tensor, x: Tensor, weight: Tensor) -> Optional[Tensor]:
    """:func:`.cpu_adder.input_grad` or :func:`.triton_adder.input_grad` where one applies, else None."""
    if triton_adder.triton_supported(grad, x, weight):
        return triton_adder.input_grad(grad, x, weight)
    if cpu_adder.cpu_supported(grad, x, weight):
        return cpu_adder.input_grad(grad, x, weight)
    return None


def depthwise_add_conv(x: Tensor, weight: Tensor, geometry: Conv2dGeometry, scale: GradScale) -> Optional[Tensor]:
    """The depthwise negative-L1 convolution of ``x`` (zero padding) with AdderNet's backward, on a fast path.

    ``scale(dw, p)`` rescales the weight gradient given ``p = g^T x``. Shape: x (N, C, H, W), weight (C, kh, kw)
    -> (N, C, H_out, W_out) (channels-last on the Triton path).
    """
    if triton_adder.triton_supported(x, weight):
        window = triton_depthwise.Window(tuple(x.shape[2:]), geometry.output_size(*x.shape[2:]), geometry.stride,
                                         geometry.dilation, geometry.padding)
        return triton_depthwise.depthwise_window(x.contiguous(memory_format=torch.channels_last), weight, window,
                                                 scale)
    if cpu_depthwise.depthwise_supported(x, weight):
        (pad_h, pad_w) = geometry.padding
        xp = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
        return cpu_depthwise.depthwise_add_conv(xp, weight, geometry.stride, geometry.dilation, scale)
    return None


def _as_image(sequence: Tensor) -> Tensor:
    """A time-major ``(T, B, C)`` seen as the image ``(B, C, T, 1)`` the depthwise window slides over (a view)."""
    return sequence.permute(1, 2, 0).unsqueeze(-1)


def add_mix(x: Tensor, kernel: Tensor, left: int, scale: GradScale) -> Optional[Tensor]:
    """:func:`.cpu_mixer.add_mix` (same contract), or the Triton window for CUDA tensors; None where neither applies.

    Shape: x (T, B, C), kernel (H, K) -> (T, B, C).
    """
    if triton_adder.triton_supported(x, kernel):
        length = x.size(0)
        window = triton_depthwise.Window((length, 1), (length, 1), padding=(left, 0))
        y = triton_depthwise.depthwise_window(_as_image(x), kernel.unsqueeze(-1), window, scale)
        return y.squeeze(-1).permute(2, 0, 1)
    if cpu_mixer.mixer_supported(x, kernel):
        return cpu_mixer.add_mix(x, kernel, left, scale)
    return None


def product_mix(x: Tensor, kernel: Tensor, left: int) -> Optional[Tensor]:
    """:func:`.cpu_mixer.product_mix` (same contract) where it takes the tensors, else None.

    Shape: x (T, B, C), kernel (H, K) -> (T, B, C).
    """
    if cpu_mixer.mixer_supported(x, kernel):
        return cpu_mixer.product_mix(x, kernel, left)
    return None


def mix_window(window: Tensor, kernel: Tensor, op: OpKind) -> Optional[Tensor]:
    """:func:`.cpu_mixer.mix_window` (same contract: no autograd), or the Triton window (``ADD``); None where neither
    applies.

    Shape: window (K, B, C), kernel (H, K) -> (B, C).
    """
    if op is OpKind.ADD and triton_adder.triton_supported(window, kernel):
        taps = window.size(0)
        last = triton_depthwise.Window((taps, 1), (1, 1))
        return triton_depthwise.forward(_as_image(window), kernel.unsqueeze(-1), last)[:, :, 0, 0]
    if cpu_mixer.mixer_supported(window, kernel):
        return cpu_mixer.mix_window(window, kernel, op)
    return None


def clamped_ps_weight_(exponent: Tensor, sign: Tensor, low: int, high: int) -> Optional[Tensor]:
    """:func:`.cpu_shift.clamped_ps_weight_` (same contract: parameters clamped in place) where it takes them, else
    None. Shape: exponent, sign (same) -> same."""
    if cpu_shift.elementwise_supported(exponent, sign):
        return cpu_shift.clamped_ps_weight_(exponent, sign, low, high)
    return None


def ps_exponent_grad(grad: Tensor, weight: Tensor) -> Optional[Tensor]:
    """:func:`.cpu_shift.ps_exponent_grad` where it takes the tensors, else None. Shape: grad, weight (same) -> same."""
    if cpu_shift.elementwise_supported(grad, weight):
        return cpu_shift.ps_exponent_grad(grad, weight)
    return None


def round_pow2(weight: Tensor, low: int, high: int, threshold: float) -> Optional[Tensor]:
    """:func:`.cpu_shift.round_pow2` (same contract) where it takes the weight, else None. Shape: any -> same."""
    if cpu_shift.elementwise_supported(weight):
        return cpu_shift.round_pow2(weight, low, high, threshold)
    return None


def pow2_codes(weight: Tensor) -> Optional[Tensor]:
    """The packed form of a weight of signed powers of two that :func:`pow2_linear` reads
    (:func:`.cpu_shift.pow2_codes` for a CPU weight), or None where no fast path would read one (a weight below
    :data:`.cpu_shift.PACKED_MIN_WEIGHTS`). Shape: weight (M, K) -> (ceil(M / 64), K, 64)."""
    if weight.numel() < cpu_shift.PACKED_MIN_WEIGHTS:
        return None
    return cpu_shift.pow2_codes(weight)


def pow2_linear(x: Tensor, codes: Tensor, bias: Optional[Tensor], out_features: int) -> Optional[Tensor]:
    """:func:`.cpu_shift.pow2_linear` (same contract: no autograd, the front block of the codes) where it takes the
    tensors (a few rows on CPU), else None. Shape: x (*, K), codes of an (M', K') weight, bias (out_features,) or None
    -> (*, out_features)."""
    if cpu_shift.packed_supported(x, bias, out_features):
        return cpu_shift.pow2_linear(x, codes, bias, out_features)
    return None
