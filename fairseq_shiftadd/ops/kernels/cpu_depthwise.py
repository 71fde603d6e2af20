"""Direct depthwise adder convolution on CPU (AdderNet, arXiv 1912.13200), with no unfolded patches.

The loops of ``cpu_depthwise.cpp`` (compiled at first use, :mod:`.build`) on an already zero-padded input
``xp (B, C, Hp, Wp)``, channel ``c`` against the weight plane ``w[c]`` of ``w (C, kh, kw)`` (a depthwise
:class:`~fairseq_shiftadd.ops.adder.AddConv2d`):

* ``y[b, c, i, j] = -sum_{u, v} |xp[b, c, i*sh + u*dh, j*sw + v*dw] - w[c, u, v]|``;
* ``dxp`` = the HardTanh surrogate summed over every output that reads a position;
* ``dw[c, u, v] = p[c, u, v] - w[c, u, v] * sum_{b, i, j} g[b, c, i, j]`` with ``p`` the kernel's ``g^T x``,
  then the caller's adaptive scaling (:func:`~fairseq_shiftadd.ops.adder.scale_weight_grad`,
  passed in as ``scale`` so that this module does not import the operators).

The same formulas as :func:`~fairseq_shiftadd.ops.adder.add_matmul` on unfolded patches (the reference path
and the fallback). Half inputs are computed in float32 and rounded back. Temporaries ``O(B C Hp Wp)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from .build import KERNEL_DTYPES, GradScale, KernelLibrary

__all__ = ["depthwise_supported", "depthwise_add_conv"]

_SOURCE = Path(__file__).with_name("cpu_depthwise.cpp")
_SIGNATURES = {f"depthwise_{name}": (pointers, 12, 1) for name, pointers in
               (("forward", 3), ("input_grad", 4), ("weight_product", 3))}  # 12 sizes: Geometry
_Pair = Tuple[int, int]


_KERNELS = KernelLibrary(_SOURCE, _SIGNATURES)


def depthwise_supported(*tensors: Tensor) -> bool:
    """Whether the direct kernels take these tensors (:meth:`~.build.KernelLibrary.supports`)."""
    return _KERNELS.supports(*tensors)



class _DepthwiseAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, xp: Tensor, weight: Tensor, stride: _Pair, dilation: _Pair,
                scale: GradScale) -> Tensor:
        (batch, channels, hp, wp), (_, kh, kw) = xp.shape, weight.shape
        ho = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        geometry = (batch, channels, hp, wp, ho, wo, kh, kw, *stride, *dilation)
        xp, weight = xp.contiguous(), weight.contiguous()
        y = xp.new_empty(batch, channels, ho, wo)
        _KERNELS.call("depthwise_forward", xp, weight, y, *geometry)
        ctx.save_for_backward(xp, weight)
        ctx.geometry, ctx.scale = geometry, scale
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None, None]:
        xp, weight = ctx.saved_tensors
        grad = grad.contiguous()
        dxp = dw = None
        if ctx.needs_input_grad[0]:
            dxp = torch.empty_like(xp)
            _KERNELS.call("depthwise_input_grad", grad, xp, weight, dxp, *ctx.geometry)
        if ctx.needs_input_grad[1]:
            product = torch.empty_like(weight)
            _KERNELS.call("depthwise_weight_product", grad, xp, product, *ctx.geometry)
            dw = ctx.scale(product - weight * grad.sum(dim=(0, 2, 3))[:, None, None], product)
        return dxp, dw, None, None, None


def depthwise_add_conv(xp: Tensor, weight: Tensor, stride: _Pair, dilation: _Pair, scale: GradScale) -> Tensor:
    """Depthwise negative-L1 convolution of a zero-padded input (see the module docstring).

    ``scale(dw, p)`` rescales the weight gradient ``dw`` given ``p = g^T x`` (both ``(C, kh, kw)``).

    Shape: xp (B, C, Hp, Wp), weight (C, kh, kw) -> (B, C, Ho, Wo),
    ``Ho = (Hp - dh (kh - 1) - 1) // sh + 1`` (likewise Wo).
    """
    dtype = xp.dtype if xp.dtype in KERNEL_DTYPES else torch.float32
    y = _DepthwiseAdd.apply(xp.to(dtype), weight.to(dtype), tuple(stride), tuple(dilation), scale)
    return y.to(xp.dtype)
