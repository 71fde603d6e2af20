"""Which fast path computes the adder products: Triton (CUDA tensors), the compiled CPU kernels, or none.

:func:`~fairseq_shiftadd.ops.adder.add_matmul` asks here; ``None`` means "use the reference path".
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from . import cpu_adder, triton_adder

__all__ = ["neg_l1", "input_grad"]


def neg_l1(x: Tensor, weight: Tensor, centred: bool) -> Optional[Tensor]:
    """:func:`.cpu_adder.neg_l1` or :func:`.triton_adder.neg_l1` where one supports the tensors, else None."""
    if triton_adder.triton_supported(x, weight):
        return triton_adder.neg_l1(x, weight, centred)
    if cpu_adder.cpu_supported(x, weight):
        return cpu_adder.neg_l1(x, weight, centred)
    return None


def input_grad(grad: Tensor, x: Tensor, weight: Tensor) -> Optional[Tensor]:
    """:func:`.cpu_adder.input_grad` or :func:`.triton_adder.input_grad` where one applies, else None."""
    if triton_adder.triton_supported(grad, x, weight):
        return triton_adder.input_grad(grad, x, weight)
    if cpu_adder.cpu_supported(grad, x, weight):
        return cpu_adder.input_grad(grad, x, weight)
    return None
