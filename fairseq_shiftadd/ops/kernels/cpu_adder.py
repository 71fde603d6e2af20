"""Fast CPU path of the adder layer's negative-L1 products (AdderNet, arXiv 1912.13200).

The register-blocked loops of ``cpu_adder.cpp`` (compiled at first use, :mod:`.build`), wrapped to the
contracts of the reference functions in :mod:`fairseq_shiftadd.ops.adder`, which remain the ground truth and
the fallback:

* :func:`neg_l1` — ``y[g, n, m] = -sum_k |x - w|``, or with ``centred`` that minus its mean over ``m``; what it
  derives from the weight alone (centred, packed, row sums: a few passes over it, which cost more than the products
  at a decoding step's few rows) is :func:`prepare`'s, which callers may keep for a weight that does not change;
* :func:`conv_neg_l1` — the plain forward of a grouped convolution by implicit im2col (inference: no
  unfolded patches);
* :func:`input_grad` — ``dx[g, n, k] = sum_m g[g, n, m] * clamp(w[g, m, k] - x[g, n, k], -1, 1)``.

Two kernels each, chosen by the number of weight rows ``M``. Many rows: an ``NR x MR`` block of outputs in
vector registers while ``k`` runs; the forward sums ``max(x, w)`` on x and w centred by the weights' column
means (``|a - b| = 2 max(a, b) - a - b``, as the reference), or in the centred form the per-element terms
``relu(x) - max(x, w)`` (each bounded by ``|w|``; ``|x| - |x - w| = 2 (relu(x) - max(x, w)) + w``). Few rows
(``M`` below half a register panel: depthwise convs, the lightweight add mixers): vectorised along ``N`` on
transposed operands, with direct ``|x - w|`` (or ``|x| - |x - w|``) terms.

Accumulation is in float32 for float32/bfloat16/float16 inputs (half inputs are converted to float32 and the
results rounded once back) and in float64 for float64. Temporaries: packed, transposed or padded copies of
x, w and g (``O(NK + MK + NM)``); no ``N x M x K`` tensor. Threads: ``torch.get_num_threads()``.

Set ``FAIRSEQ_SHIFTADD_KERNELS=reference`` to disable every fast path (the reference path then runs).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .build import HALF_DTYPES, KERNEL_DTYPES, KernelLibrary, Signature

__all__ = ["KERNELS", "cpu_supported", "PreparedWeight", "prepare", "neg_l1", "conv_neg_l1", "input_grad"]

_SOURCE = Path(__file__).with_name("cpu_adder.cpp")
Pair = Tuple[int, int]
_SIGNATURES: dict[str, Signature] = {  # pointers, int64 sizes, ints (mode, threads)
    "forward": (7, 4, 2), "input_grad": (7, 4, 1), "forward_few": (3, 4, 2), "input_grad_few": (4, 4, 1),
    "conv_forward": (8, 5, 1),
}


KERNELS = KernelLibrary(_SOURCE, _SIGNATURES)


def cpu_supported(*tensors: Tensor) -> bool:
    """Whether the compiled kernels take these tensors (:meth:`~.build.KernelLibrary.supports`)."""
    return KERNELS.supports(*tensors)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in HALF_DTYPES else dtype


@functools.cache
def _block(kind: str, dtype: torch.dtype) -> int:
    """A kernel's block width in elements: ``mr`` (weight rows), ``kr`` (columns), ``nb`` (input rows)."""
    return getattr(KERNELS.library, f"shiftadd_{kind}_{KERNEL_DTYPES[dtype]}")()


def _few_rows(weight: Tensor, dtype: torch.dtype) -> bool:
    """Whether ``M`` is below half a register panel (the N-vectorised kernels are then faster)."""
    return 2 * weight.shape[1] < _block("mr", dtype)


def _transposed(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``(G, N, K) -> (G, K, Np)`` contiguous, ``N`` zero-padded to a multiple of the row block."""
    width = _block("nb", dtype)
    return F.pad(x.to(dtype).transpose(1, 2), (0, -(-x.shape[1] // width) * width - x.shape[1])).contiguous()


class PreparedWeight(NamedTuple):
    """What :func:`neg_l1` derives from its weight alone (many weight rows), for one ``centred`` setting."""

    packed: Tensor  # the weight (centred by its column means unless ``centred``) packed in panels: (G, P, K, MR)
    row_sums: Tensor  # that weight's sums over k: (G, M)
    centre: Optional[Tensor]  # the column means, subtracted from x too (None with ``centred``): (G, 1, K)


def prepare(weight: Tensor, centred: bool) -> Optional[PreparedWeight]:
    """:func:`neg_l1`'s weight-only work for ``weight`` and ``centred``; None where it has none to keep (few weight
    rows: the weight is read as it is). Shape: weight (G, M, K)."""
    dtype = _compute_dtype(weight.dtype)
    if _few_rows(weight, dtype):
        return None
    weight, centre = weight.to(dtype), None
    if not centred:  # as the reference: x and w centred by the weights' column means (against cancellation)
        centre = weight.mean(dim=1, keepdim=True)
        weight = weight - centre
    return PreparedWeight(_packed(weight), weight.sum(dim=-1), centre)


def neg_l1(x: Tensor, weight: Tensor, centred: bool, prepared: Optional[PreparedWeight] = None) -> Tensor:
    """``-sum_k |x[g, n, k] - w[g, m, k]|``, or with ``centred`` that minus its mean over ``m``.

    ``prepared``: :func:`prepare` of this very ``weight`` and ``centred`` where the caller keeps it (built here
    otherwise). Shape: x (G, N, K), weight (G, M, K) -> (G, N, M), in x's dtype.
    """
    out_dtype, dtype = x.dtype, _compute_dtype(x.dtype)
    (groups, rows, length), cols = x.shape, weight.shape[1]
    if _few_rows(weight, dtype):
        x_t = _transposed(x, dtype)
        total = x_t.new_empty(groups, cols, x_t.shape[2])
        KERNELS.call("forward_few", x_t, weight.to(dtype).contiguous(), total, groups, x_t.shape[2], cols, length,
              int(centred))
        total = total[:, :, :rows].transpose(1, 2)
        total = total - total.mean(dim=-1, keepdim=True) if centred else -total
        return total.to(out_dtype).contiguous()
    if prepared is None:
        prepared = prepare(weight, centred)
    x = x.to(dtype).contiguous()
    total = x.new_empty(groups, rows, cols)
    centre, centred_x, x_sums = 0, 0, 0  # the kernel's scratch without ``centred``: x centred, and its row sums
    if not centred:
        centre, centred_x, x_sums = prepared.centre, torch.empty_like(x), x.new_empty(groups, rows)
    KERNELS.call("forward", x, centre, prepared.packed, prepared.row_sums, centred_x, x_sums, total, groups, rows, cols,
                 length, int(centred))
    return total.to(out_dtype)


def _packed(weight: Tensor) -> Tensor:
    """``(G, M, K) -> (G, P, K, MR)``, rows zero-padded to ``P`` panels: a panel's ``K x MR`` block is contiguous."""
    (groups, cols, length), width = weight.shape, _block("mr", weight.dtype)
    panels = -(-cols // width)
    packed = F.pad(weight, (0, 0, 0, panels * width - cols)).view(groups, panels, width, length)
    return packed.transpose(2, 3).contiguous()


def conv_neg_l1(
    xp: Tensor, weight: Tensor, kernel_size: Pair, stride: Pair, dilation: Pair, out_size: Pair
) -> Tensor:
    """Plain ``-sum_k |patch[g, n, k] - w[g, m, k]|`` of a grouped convolution by implicit im2col (no autograd).

    The patches (as ``F.unfold`` orders them: channel, then kernel row, then column) are read in place from
    the zero-padded input; as in :func:`neg_l1` they and the weights are centred by the weights' column means
    (in the kernel), and ``sum_k`` of the centred patches is a box filter (``conv2d`` with ones).

    Shape: xp (B, C, Hp, Wp), weight (G, M, K = C/G * kh * kw) -> (G, B * Ho * Wo, M), in xp's dtype.
    """
    out_dtype, dtype = xp.dtype, _compute_dtype(xp.dtype)
    xp, weight = xp.to(dtype).contiguous(), weight.to(dtype)
    (batch, channels, height, width), (groups, cols, length) = xp.shape, weight.shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_size, stride, dilation, out_size
    per_group = channels // groups
    plane = height * width

    def grid(*axes: Tuple[int, int]) -> Tensor:  # sum of arange(size) * step over the axes, flattened
        total = torch.zeros((), dtype=torch.int64)
        for axis, (size, step) in enumerate(axes):
            shape = [1] * len(axes)
            shape[axis] = size
            total = total + (torch.arange(size) * step).view(shape)
        return total.reshape(-1).contiguous()

    offset = grid((per_group, plane), (kh, dh * width), (kw, dw))
    base = grid((batch, channels * plane), (ho, sh * width), (wo, sw))
    centre = weight.mean(dim=1)  # (G, K)
    weight = weight - centre[:, None, :]
    rows = batch * ho * wo
    ones = xp.new_ones(groups, per_group, kh, kw)
    patch_sums = F.conv2d(xp, ones, stride=(sh, sw), dilation=(dh, dw), groups=groups)  # (B, G, Ho, Wo)
    patch_sums = patch_sums.permute(1, 0, 2, 3).reshape(groups, rows) - centre.sum(dim=-1, keepdim=True)
    total = xp.new_empty(groups, rows, cols)
    KERNELS.call("conv_forward", xp, base, offset, centre.contiguous(), _packed(weight), weight.sum(dim=-1),
                 patch_sums.contiguous(), total, groups, rows, cols, length, per_group * plane)
    return total.to(out_dtype)


def _columns_padded(t: Tensor) -> Tensor:
    """``t`` contiguous, its last dimension zero-padded to a multiple of the column block ``kr`` (not copied when it
    already is both)."""
    width = _block("kr", t.dtype)
    pad = -(-t.shape[-1] // width) * width - t.shape[-1]
    return (F.pad(t, (0, pad)) if pad else t).contiguous()


def input_grad(grad: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``dx[g, n, k] = sum_m grad[g, n, m] * clamp(w[g, m, k] - x[g, n, k], -1, 1)``.

    Shape: grad (G, N, M), x (G, N, K), weight (G, M, K) -> (G, N, K), in x's dtype.
    """
    out_dtype, dtype = x.dtype, _compute_dtype(x.dtype)
    (groups, rows, length), cols = x.shape, weight.shape[1]
    weight = weight.to(dtype)
    if _few_rows(weight, dtype):
        x_t, grad_t = _transposed(x, dtype), _transposed(grad, dtype)
        dx_t = torch.empty_like(x_t)
        KERNELS.call("input_grad_few", grad_t, x_t, weight.contiguous(), dx_t, groups, x_t.shape[2], cols, length)
        return dx_t[:, :, :rows].transpose(1, 2).to(out_dtype).contiguous()
    grad = grad.to(dtype).contiguous()
    x_padded, weight_padded = _columns_padded(x.to(dtype)), _columns_padded(weight)
    dx = torch.empty_like(x_padded)
    KERNELS.call("input_grad", grad, grad.sum(dim=-1), x_padded, weight_padded, weight_padded.amin(dim=1),
          weight_padded.amax(dim=1), dx, groups, rows, cols, x_padded.shape[2])
    return dx[..., :length].to(out_dtype)
