"""Adder layers (AdderNet, Chen et al., arXiv 1912.13200), as used by ShiftAddNAS (arXiv 2205.08119).

An adder layer replaces the dot product by a negative L1 distance, ``y[n, m] = -sum_k |x[n, k] - w[m, k]|``
(a conv applies it to unfolded patches), so it needs additions and subtractions only. Its gradients are
AdderNet's surrogates, not the true ones (which would be signs):

* ``dL/dw[m, k] = sum_n g[n, m] * (x[n, k] - w[m, k]) = (g^T x)[m, k] - w[m, k] * sum_n g[n, m]``,
  rescaled per layer: ``dL/dw <- eta * sqrt(numel(w)) / ||dL/dw||_2 * dL/dw`` (eta = 0.2);
* ``dL/dx[n, k] = sum_m g[n, m] * hardtanh(w[m, k] - x[n, k])``.

Memory: neither pass materialises the ``N x M x K`` difference tensor (naive autograd, and
``torch.cdist``'s backward, do: 128 GiB for 8192 x 1024 x 4096). The weight gradient is two matmuls; the
forward and the input gradient are computed tile by tile, each tile's temporary kept under
``memory_budget_bytes`` and, on CPU, at most a cache-sized few MiB. Per tile the forward is one
``maximum`` and one sum (``|a - b| = 2 max(a, b) - a - b``), the input gradient one ternary ``clamp`` and
one batched matrix-vector product (see :func:`_neg_l1` and :func:`_input_grad`; layers with few weight
rows, such as depthwise convs, use plain subtract/abs and subtract/clamp tiles). On CPU this measured
3-6x faster than ``torch.cdist(x, w, p=1)``, whose forward is memory-bounded and exact but runs a
scalar-speed kernel.

Output magnitudes are large and negative (about ``-K`` times the typical ``|x - w|``): models follow
adder layers with BatchNorm / LayerNorm; the layers themselves do not normalise.

**Centred outputs** (``centre_outputs=True``, for an adder output that a normalisation over its outputs
follows, as the LayerNorms of the models' add FFNs):
``y'[n, m] = y[n, m] - mean_m' y[n, m'] = -||x[n] - w[m]||_1 + mean_m' ||x[n] - w[m']||_1``. The row mean
(hundreds for LayerNorm-ed inputs of width 512) dominates ``y``; the variation between the outputs ``m``
that the normalisation keeps is tens at most, so in float32 ``y`` keeps few of its digits and in bfloat16 /
float16 none. ``y'`` is computed without forming that offset: per tile the terms
``|x_k| - |x_k - w_k| = 2 (relu(x_k) - max(x_k, w_k)) + w_k`` (each bounded by ``|w_k|``), summed in at
least float32, then the row mean subtracted, then rounded once to the input dtype. A normalisation over ``m``
removes a per-row constant exactly, so ``norm(y' + b) == norm(y + b)``: the same layer output, which an
integer accelerator (exact arithmetic) computes from ``y`` with AdderNet's ``2K - 1`` adds per output (the
models' op counts). In floating point the centred form costs ``N * K`` more ``relu``, one more subtraction
per tile element and ``O(N M)`` for the means. Backward: the exact chain rule through the centring,
``g <- g - mean_m g`` (a no-op under a following normalisation, whose input gradient has zero row mean), then
AdderNet's surrogates.

**Weight-gradient scale** (:class:`GradNorm`): AdderNet's adaptive scaling fixes the norm of ``dw`` in every
backward pass at ``eta * sqrt(numel(w))``, whatever the loss's scale. ``GradNorm.MULT`` instead sets it to
``eta * ||g^T x||_F``, the norm of the weight gradient that a multiplicative layer ``x w^T`` receives for the
same input and output gradient: linear in ``g``, so the add gradient scales with the loss as every other
gradient does (fairseq's division by the token count, fp16 loss scaling), and an add candidate reading a
weight shared with a mult candidate takes steps of the mult candidate's size under the optimizer's shared
moments. A zero output gradient gives a zero weight gradient under both rules (never NaN).
"""
from __future__ import annotations

import functools
import math
from enum import Enum
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from .op_counts import OpCounts
from .kernels import cpu_adder, dispatch
from .kernels.weight_cache import CompanionCache, DerivedTensorOwner
from .kinds import OpKind
from .quant import QuantConfig, SharedScaleFakeQuant
from .validate import Conv2dAttributes, Conv2dGeometry, positive_int, positive_number

__all__ = ["GradNorm", "add_matmul", "prepared_add_weight", "neg_l1_broadcast", "add_conv2d", "scale_weight_grad",
           "AddLinear", "AddConv2d"]

DEFAULT_MEMORY_BUDGET_BYTES = 256 * 2**20
# CPU tiling, whatever the budget (measured on a 2-core AMD EPYC, 512 KiB L2 per core, 32 MiB L3): a tile's
# temporary of 4 MiB stays in the last-level cache (about 2x faster than 16 MiB and up, and than 1 MiB where
# per-op overhead dominates), and the block of weight rows it reads fits a core's L2.
_CACHE_TILE_BYTES = 4 * 2**20
_WEIGHT_BLOCK_BYTES = 2**19
_MANY_WEIGHT_ROWS = 8
_FLOAT_BITS = 32
_Tile = Tuple[slice, slice, slice, Tensor]


class GradNorm(str, Enum):
    """Norm that the adaptive scaling ``dw <- target / ||dw||_2 * dw`` gives the adder weight gradient.

    ``ADDERNET``: ``target = eta * sqrt(numel(w))`` (AdderNet, arXiv 1912.13200); ``MULT``: ``target = eta *
    ||g^T x||_F``, the norm of a multiplicative layer's weight gradient for the same input ``x`` and output
    gradient ``g`` (linear in ``g``; see the module docstring).
    """

    ADDERNET = "addernet"
    MULT = "mult"


def _tiles(x: Tensor, weight: Tensor, max_bytes: int) -> Iterator[_Tile]:
    """Cover the output ``(G, N, M)`` with blocks ``(g, n, m)`` and a scratch ``(g, n, m, K)`` tensor each.

    A block's scratch takes at most ``max_bytes`` (and at least one K-long row); one buffer is reused. On
    CPU the block is also capped to cache sizes. Blocks grow along M (contiguous weight rows) first, then
    N, then G; the loop runs N innermost, so a block of weight rows stays in cache while the inputs pass.
    """
    (groups, rows, length), cols = x.shape, weight.shape[1]
    max_cols = cols
    if x.device.type == "cpu":
        max_bytes = min(max_bytes, _CACHE_TILE_BYTES)
        max_cols = max(1, _WEIGHT_BLOCK_BYTES // (length * x.element_size()))
    max_elements = max_bytes // x.element_size()
    col_step = min(cols, max_cols, max(1, max_elements // length))
    row_step = max(1, min(rows, max_elements // (col_step * length)))  # >= 1 also for an empty input
    group_step = min(groups, max(1, max_elements // (row_step * col_step * length)))
    scratch = x.new_empty(group_step * row_step * col_step * length)
    for g in range(0, groups, group_step):
        for m in range(0, cols, col_step):
            for n in range(0, rows, row_step):
                shape = (min(group_step, groups - g), min(row_step, rows - n), min(col_step, cols - m), length)
                block = slice(g, g + group_step), slice(n, n + row_step), slice(m, m + col_step)
                yield (*block, scratch[: math.prod(shape)].view(shape))


def _centred(x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
    """``x - c`` and ``w - c`` (contiguous) with ``c[g, k]`` the mean of ``w[g, :, k]``.

    Differences are unchanged; sums of ``x`` or ``w`` alone then cancel only on the weights' spread, not on
    an offset that ``x`` and ``w`` share.
    """
    centre = weight.mean(dim=1, keepdim=True)
    return (x - centre).contiguous(), (weight - centre).contiguous()


def _many_rows(weight: Tensor) -> bool:
    """Whether ``O((N + M) K)`` preparation that saves a pass per tile pays off (``M >= 8``; measured)."""
    return weight.shape[1] >= _MANY_WEIGHT_ROWS


def _neg_l1(x: Tensor, weight: Tensor, max_bytes: int) -> Tensor:
    """``-sum_k |x[g, n, k] - w[g, m, k]|``, tile by tile, with one of two exact kernels.

    Many weight rows: ``|a - b| = 2 max(a, b) - a - b``, so a tile is one ``maximum`` and one sum over K;
    the row sums, and centring x and w (:func:`_centred`, against cancellation), cost ``O((N + M) K)``.
    Few weight rows (a depthwise conv has one per group): that work would cost as much as the tiles
    themselves, so subtract, abs and sum.
    """
    many = _many_rows(weight)
    x, weight = _centred(x, weight) if many else (x.contiguous(), weight.contiguous())
    total = x.new_empty(x.shape[0], x.shape[1], weight.shape[1])
    for g, n, m, scratch in _tiles(x, weight, max_bytes):
        a, b = x[g, n, None, :], weight[g, None, m, :]
        distance = torch.maximum(a, b, out=scratch) if many else torch.sub(a, b, out=scratch).abs_()
        torch.sum(distance, dim=-1, out=total[g, n, m])
    if not many:
        return total.neg_()
    return total.mul_(-2.0).add_(weight.sum(dim=-1)[:, None, :]).add_(x.sum(dim=-1)[:, :, None])


def _centred_l1(x: Tensor, weight: Tensor, max_bytes: int) -> Tensor:
    """``-||x[g, n] - w[g, m]||_1`` minus its mean over ``m``, with no large intermediate (see the module).

    ``|x| - |x - w| = 2 (relu(x) - max(x, w)) + w``: a tile is one ``maximum``, one subtraction from
    ``relu(x)`` (per element, before summing, so no large terms cancel) and one sum over K in at least
    float32; then ``2 * sum + sum_k w``, which differs from ``-||x - w||_1`` by the row constant ``||x||_1``,
    and the row mean is removed. ``relu(x)`` and the weight row sums cost ``O((N + M) K)``.
    """
    x, weight = x.contiguous(), weight.contiguous()
    positive = torch.relu(x)
    accumulate = torch.promote_types(x.dtype, torch.float32)
    total = x.new_empty(x.shape[0], x.shape[1], weight.shape[1], dtype=accumulate)
    for g, n, m, scratch in _tiles(x, weight, max_bytes):
        closer = torch.maximum(x[g, n, None, :], weight[g, None, m, :], out=scratch)
        difference = torch.sub(positive[g, n, None, :], closer, out=scratch)
        torch.sum(difference, dim=-1, dtype=accumulate, out=total[g, n, m])
    total.mul_(2.0).add_(weight.sum(dim=-1, dtype=accumulate)[:, None, :])
    return total.sub_(total.mean(dim=-1, keepdim=True)).to(x.dtype)


def _input_grad(grad: Tensor, x: Tensor, weight: Tensor, max_bytes: int) -> Tensor:
    """``dx[g, n, k] = sum_m grad[g, n, m] * hardtanh(w[g, m, k] - x[g, n, k])`` (x, w contiguous).

    Per tile, the hardtanh terms, then a batched matrix-vector product over m. Many weight rows:
    ``hardtanh(w - x) = clamp(w, x - 1, x + 1) - x``, one ternary ``clamp`` per tile, with x first clamped
    to ``[min_m w - 1, max_m w + 1]`` per column: no term changes (beyond that range every term saturates
    either way), and the final ``- x * sum_m grad`` has no large ``x`` to cancel. Few weight rows (a
    depthwise conv): ``clamp(w - x, -1, 1)`` directly, with no ``O(NK)`` preparation.
    """
    many = _many_rows(weight)
    if many:
        x = torch.clamp(x, weight.amin(dim=1, keepdim=True) - 1.0, weight.amax(dim=1, keepdim=True) + 1.0)
        low, high = x - 1.0, x + 1.0
    total = torch.zeros_like(x)
    for g, n, m, scratch in _tiles(x, weight, max_bytes):
        if many:
            terms = torch.clamp(weight[g, None, m, :], low[g, n, None, :], high[g, n, None, :], out=scratch)
        else:
            terms = torch.sub(weight[g, None, m, :], x[g, n, None, :], out=scratch).clamp_(-1.0, 1.0)
        total[g, n] += torch.einsum("gnm,gnmk->gnk", grad[g, n, m], terms)
    return total.sub_(x * grad.sum(dim=-1, keepdim=True)) if many else total


def _weight_grad(
    grad: Tensor, x: Tensor, weight: Tensor, centre: Tensor, eta: Optional[float], grad_norm: GradNorm
) -> Tensor:
    """``dw = g^T x - w * sum_n g`` (two matmuls; x, w centred by ``centre``), then :func:`scale_weight_grad`."""
    grad_sum = grad.sum(dim=1)[:, :, None]  # (G, M, 1)
    product_grad = torch.matmul(grad.transpose(1, 2), x)  # (g^T x) with x centred
    dw = product_grad - weight * grad_sum
    if eta is None or grad_norm is not GradNorm.MULT:
        return scale_weight_grad(dw, None, eta, grad_norm)
    return scale_weight_grad(dw, product_grad.add_(grad_sum * centre), eta, grad_norm)  # g^T x, x uncentred


def _grad_norm(value: GradNorm | str) -> GradNorm:
    """``value`` as a :class:`GradNorm`.

    Raises:
        ValueError: not one of its values (one line naming ``grad_norm``).
    """
    try:
        return GradNorm(value)
    except ValueError:
        raise ValueError(f"grad_norm must be one of {[n.value for n in GradNorm]}, got {value!r}") from None


def scale_weight_grad(dw: Tensor, product: Optional[Tensor], eta: Optional[float], grad_norm: GradNorm) -> Tensor:
    """AdderNet's adaptive scaling ``dw <- target / ||dw||_2 * dw`` (in place; :class:`GradNorm` sets ``target``).

    ``product`` is ``g^T x`` (uncentred x), read by ``GradNorm.MULT`` only. ``eta=None``: ``dw`` unchanged.
    The scaling is evaluated as ``(dw / ||dw||) * target`` (norms in at least float32), so no factor
    overflows: a zero ``dw`` stays zero (AdderNet's ``eta * sqrt(numel) / ||dw||`` with the norm clamped to the
    dtype's tiny value overflowed to ``inf``, and ``0 * inf`` gave NaN).
    """
    if eta is None:
        return dw
    norm_dtype = torch.promote_types(dw.dtype, torch.float32)  # no overflow in float16 / bfloat16
    if grad_norm is GradNorm.MULT:
        target = eta * torch.linalg.vector_norm(product, dtype=norm_dtype)
    else:
        target = eta * math.sqrt(dw.numel())
    norm = torch.linalg.vector_norm(dw, dtype=norm_dtype).clamp_min(torch.finfo(norm_dtype).tiny)
    return dw.div_(norm).mul_(target)


def _add_matmul_forward(x: Tensor, weight: Tensor, max_bytes: int, centre_outputs: bool,
                        prepared: Optional[cpu_adder.PreparedWeight]) -> Tensor:
    """:func:`add_matmul`'s value: a fast path of :mod:`.kernels.dispatch`, else the tiled reference."""
    fast = dispatch.neg_l1(x, weight, centre_outputs, prepared)  # ops/kernels; this module holds their reference
    return fast if fast is not None else (_centred_l1 if centre_outputs else _neg_l1)(x, weight, max_bytes)


class _AddMatmul(torch.autograd.Function):
    """Autograd wrapper of the negative L1 "matmul" with AdderNet's surrogate backward."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        weight: Tensor,
        eta: Optional[float],
        max_bytes: int,
        centre_outputs: bool,
        grad_norm: GradNorm,
        prepared: Optional[cpu_adder.PreparedWeight],
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.eta, ctx.max_bytes, ctx.centre_outputs, ctx.grad_norm = eta, max_bytes, centre_outputs, grad_norm
        return _add_matmul_forward(x, weight, max_bytes, centre_outputs, prepared)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None, None, None,
                                                          None]:
        raw_x, raw_weight = ctx.saved_tensors
        centre = raw_weight.mean(dim=1, keepdim=True)
        x, weight = _centred(raw_x, raw_weight)  # for dw (and dx) against cancellation; O((N + M) K)
        if ctx.centre_outputs:  # y' = y - mean_m y: the exact chain rule through the centring
            grad = grad - grad.mean(dim=-1, keepdim=True)
        grad = grad.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = dispatch.input_grad(grad, x, weight)
            dx = dx if dx is not None else _input_grad(grad, x, weight, ctx.max_bytes)
        if ctx.needs_input_grad[1]:
            dw = _weight_grad(grad, x, weight, centre, ctx.eta, ctx.grad_norm)
        return dx, dw, None, None, None, None, None


def add_matmul(
    x: Tensor,
    weight: Tensor,
    eta: Optional[float] = 0.2,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    *,
    centre_outputs: bool = False,
    grad_norm: GradNorm | str = GradNorm.ADDERNET,
    prepared: Optional[cpu_adder.PreparedWeight] = None,
) -> Tensor:
    """Batched negative L1 distance ``y[g, n, m] = -sum_k |x[g, n, k] - w[g, m, k]|``, memory-bounded.

    With ``centre_outputs``: ``y[g, n, m] - mean_m' y[g, n, m']``, computed without the large row mean (for
    outputs that a normalisation over ``m`` follows; see the module docstring), and the output gradient is
    centred alike (``g <- g - mean_m g``) before the formulas below.

    Backward (AdderNet surrogate; ``g`` is the output gradient):

    * ``dw[g, m, k] = sum_n g[g, n, m] * (x[g, n, k] - w[g, m, k]) = (g^T x) - w * sum_n g`` (two matmuls),
      then, if ``eta`` is not None, ``dw <- target / ||dw||_2 * dw`` (norm over all of ``w``) with
      ``target = eta * sqrt(numel(w))`` (``GradNorm.ADDERNET``) or ``eta * ||g^T x||_F`` (``GradNorm.MULT``);
    * ``dx[g, n, k] = sum_m g[g, n, m] * hardtanh(w[g, m, k] - x[g, n, k])``.

    The forward pass and ``dx`` work on tiles whose ``(G', n, m, K)`` temporary stays under
    ``memory_budget_bytes`` (at least one K-long row); the result does not depend on the tiling beyond
    float rounding of the sums.

    Fast paths (:mod:`.kernels.dispatch`): the forward pass and ``dx`` run on the Triton kernels for CUDA
    tensors when Triton is installed, on the compiled kernels of :mod:`.kernels.cpu_adder` on CPU when they
    build (same formulas, at least float32 accumulation, temporaries ``O(NK + MK + NM)``, so the budget is
    not needed); this tiled code is their reference and fallback (``FAIRSEQ_SHIFTADD_KERNELS=reference``
    forces it).

    Shape: x (G, N, K), weight (G, M, K) -> y (G, N, M).

    Args:
        x: inputs, float32 or float64, any strides.
        weight: weights, same dtype and device as ``x``.
        eta: adaptive gradient scale of the weight (None: unscaled surrogate gradient).
        memory_budget_bytes: upper bound of a tile's temporary.
        centre_outputs: subtract each output row's mean over ``m`` (computed without the offset).
        grad_norm: the target norm of the scaled weight gradient (:class:`GradNorm` or its value).
        prepared: :func:`~.kernels.dispatch.prepare_neg_l1` of this very ``weight`` and ``centre_outputs``, which
            callers keep at inference (:class:`AddLinear`, the translation models' add slots): the CPU forward's
            weight-only work (centring, packing, row sums) then runs once, not at every decoding step.

    Raises:
        ValueError: shapes, dtypes, ``eta``, ``memory_budget_bytes`` or ``grad_norm`` are invalid (the message
            names which).
    """
    if x.dim() != 3 or weight.dim() != 3:
        raise ValueError(f"x and weight must be 3-D (G, N, K) and (G, M, K), got {_shapes(x, weight)}")
    if x.shape[0] != weight.shape[0] or x.shape[2] != weight.shape[2]:
        raise ValueError(f"x (G, N, K) and weight (G, M, K) disagree on G or K: {_shapes(x, weight)}")
    if x.dtype != weight.dtype or not x.is_floating_point():
        raise ValueError(f"x and weight must share one float dtype, got {x.dtype} and {weight.dtype}")
    positive_number("eta", eta, optional=True)
    grad_norm = _grad_norm(grad_norm)
    budget = positive_int("memory_budget_bytes", memory_budget_bytes)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _AddMatmul.apply(x, weight, eta, budget, bool(centre_outputs), grad_norm, prepared)
    return _add_matmul_forward(x, weight, budget, bool(centre_outputs), prepared)  # nothing to record: no Function


def _shapes(x: Tensor, weight: Tensor) -> str:
    return f"{tuple(x.shape)} and {tuple(weight.shape)}"


def prepared_add_weight(weight: Tensor, centred: bool) -> Tuple[Tensor, Optional[cpu_adder.PreparedWeight]]:
    """A weight as :func:`add_matmul` takes it and what its CPU forward derives from it alone, for callers that keep
    both at inference (:class:`AddLinear`, the translation models' add slots): ``(M, K) -> (1, M, K)`` and
    :func:`~.kernels.dispatch.prepare_neg_l1` of that for ``centred`` (``add_matmul``'s ``centre_outputs``)."""
    weight = weight.unsqueeze(0)
    return weight, dispatch.prepare_neg_l1(weight, centred)


def neg_l1_broadcast(x: Tensor, weight: Tensor) -> Tensor:
    """``-sum_k |x[..., k] - w[..., k]|`` over the last axis, ``x`` and ``w`` broadcast against each other, in at
    least float32; no surrogate gradients (inference: the lightweight add mixers' windows without autograd,
    :func:`~.lightconv.mix_windows`, where each window meets one kernel row, so the temporary has the windows' size).

    Shape: x (*, K), weight broadcastable to it -> the broadcast shape without its last axis, in x's dtype.
    """
    accumulate = torch.promote_types(x.dtype, torch.float32)
    distance = (x.to(accumulate) - weight.to(accumulate)).abs_()
    return distance.sum(dim=-1).neg_().to(x.dtype)


def add_conv2d(
    x: Tensor,
    weight: Tensor,
    stride: int | Tuple[int, int] = 1,
    padding: int | Tuple[int, int] = 0,
    dilation: int | Tuple[int, int] = 1,
    groups: int = 1,
    eta: Optional[float] = 0.2,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    *,
    grad_norm: GradNorm | str = GradNorm.ADDERNET,
) -> Tensor:
    """Adder 2-D convolution over an explicit weight (the functional core of :class:`AddConv2d`).

    ``y[b, o, i, j] = -sum_{c, u, v} |x_pad[b, g*C_g + c, i*s_h + u*d_h, j*s_w + v*d_w] - w[o, c, u, v]|``
    (zero padding; ``g`` the group of ``o``): :func:`add_matmul` over unfolded patches with ``G = groups``,
    so the backward is AdderNet's surrogate and no ``N x M x K`` tensor is built. Weight-shared supernets
    call it with a sliced or remapped weight. ``grad_norm``: the target norm of the scaled weight gradient, as
    :func:`add_matmul` (``GradNorm.MULT`` runs the depthwise case on the unfold path, whose backward has
    ``g^T x``).

    Shape: x (N, C_in, H, W), weight (C_out, C_in / groups, kh, kw) -> y (N, C_out, H_out, W_out).

    Raises:
        ValueError: the geometry is invalid, ``x`` does not fit it or ``grad_norm`` is unknown (the message names
            the argument).
    """
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in / groups, kh, kw), got {tuple(weight.shape)}")
    out_channels, group_channels, kh, kw = weight.shape
    geometry = Conv2dGeometry.create(
        group_channels * positive_int("groups", groups), out_channels, (kh, kw), stride, padding, dilation, groups
    )
    geometry.check_input(x.shape, "x")
    grad_norm = _grad_norm(grad_norm)
    y = _fast_add_conv2d(x, weight, geometry, eta, grad_norm)  # CPU kernels; the unfold path is their reference
    if y is not None:
        return y
    out_h, out_w = geometry.output_size(x.shape[2], x.shape[3])
    y = add_matmul(_patches(x, geometry), _taps_major(weight, groups), eta, memory_budget_bytes,
                   grad_norm=grad_norm)  # (G, N*L, C_out/G)
    return _to_image(y, groups, x.shape[0], out_h, out_w)


def _patches(x: Tensor, geometry: Conv2dGeometry) -> Tensor:
    """Every output position's receptive field, taps-major: ``patches[g, (b, i, j), (u, v, c)] = x_pad[b, g*C_g + c,
    i*s_h + u*d_h, j*s_w + v*d_w]``, read as a strided view of a channels-last padded copy and written once; the
    backward adds each tap's gradient slice back into place (:class:`_Patches`).

    (``F.unfold``'s channel-major rows need a transposed copy of the patches, and ``Tensor.unfold``'s backward is
    slow on CPU: at 8x64x28x28 both took several times longer than these two passes. The dot products do not depend
    on the order of their terms beyond rounding.)

    Shape: x (N, C_in, H, W) -> (G, N * H_out * W_out, kh * kw * C_in / G).
    """
    return _Patches.apply(x, geometry)


class _Patches(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, geometry: Conv2dGeometry) -> Tensor:
        (pad_h, pad_w), (kh, kw), (dh, dw) = geometry.padding, geometry.kernel_size, geometry.dilation
        padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, pad_w, pad_w, pad_h, pad_h))  # (N, H_pad, W_pad, C)
        windows = padded.unfold(1, (kh - 1) * dh + 1, geometry.stride[0])
        windows = windows.unfold(2, (kw - 1) * dw + 1, geometry.stride[1])[..., ::dh, ::dw]  # (N, Ho, Wo, C, kh, kw)
        windows = windows.unflatten(3, (geometry.groups, -1))  # (N, H_out, W_out, G, C_g, kh, kw)
        ctx.geometry, ctx.padded_shape, ctx.out_shape = geometry, padded.shape, windows.shape[1:3]
        return windows.permute(3, 0, 1, 2, 5, 6, 4).reshape(geometry.groups, -1, geometry.dot_length)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Tensor, None]:
        geometry, (out_h, out_w) = ctx.geometry, ctx.out_shape
        (pad_h, pad_w), (kh, kw), (dh, dw), (sh, sw) = (geometry.padding, geometry.kernel_size, geometry.dilation,
                                                        geometry.stride)
        batch, height, width, channels = ctx.padded_shape
        groups, group_channels = geometry.groups, channels // geometry.groups  # sizes explicit: N may be 0
        taps = grad.view(groups, batch, out_h, out_w, kh, kw, group_channels).permute(1, 2, 3, 4, 5, 0, 6)
        padded = grad.new_zeros(batch, height, width, channels)
        for u in range(kh):
            rows = slice(u * dh, u * dh + (out_h - 1) * sh + 1, sh)
            for v in range(kw):
                cols = slice(v * dw, v * dw + (out_w - 1) * sw + 1, sw)
                padded[:, rows, cols].view(batch, out_h, out_w, groups, group_channels).add_(taps[:, :, :, u, v])
        return padded[:, pad_h:height - pad_h, pad_w:width - pad_w].permute(0, 3, 1, 2), None


def _taps_major(weight: Tensor, groups: int) -> Tensor:
    """The conv weight in :func:`_patches`' order: ``(C_out, C_g, kh, kw) -> (G, C_out / G, kh * kw * C_g)``."""
    return weight.unflatten(0, (groups, -1)).permute(0, 1, 3, 4, 2).flatten(2)


def _fast_add_conv2d(x: Tensor, weight: Tensor, geometry: Conv2dGeometry, eta: Optional[float],
                     grad_norm: GradNorm) -> Optional[Tensor]:
    """:func:`add_conv2d` by a kernel with no unfolded patches, or None where none applies.

    Depthwise with ``GradNorm.ADDERNET``: :func:`~.kernels.dispatch.depthwise_add_conv` (Triton for CUDA tensors,
    the CPU kernel otherwise; forward and backward). Otherwise, on CPU without autograd only:
    :func:`~.kernels.cpu_adder.conv_neg_l1` (implicit im2col; training keeps the patches, which both gradients read).
    """
    pad_h, pad_w = geometry.padding
    groups = geometry.groups
    if groups == geometry.in_channels == geometry.out_channels and grad_norm is GradNorm.ADDERNET:
        scale = functools.partial(scale_weight_grad, eta=eta, grad_norm=GradNorm.ADDERNET)
        y = dispatch.depthwise_add_conv(x, weight[:, 0], geometry, scale)
        if y is not None:
            return y
    training = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if training or not cpu_adder.cpu_supported(x, weight):
        return None
    out_h, out_w = geometry.output_size(x.shape[2], x.shape[3])
    xp = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
    y = cpu_adder.conv_neg_l1(xp, weight.reshape(groups, -1, geometry.dot_length), geometry.kernel_size,
                              geometry.stride, geometry.dilation, (out_h, out_w))  # (G, N*L, C_out/G)
    return _to_image(y, groups, x.shape[0], out_h, out_w)


def _to_image(y: Tensor, groups: int, batch: int, out_h: int, out_w: int) -> Tensor:
    """``(G, N * Ho * Wo, C_out / G) -> (N, C_out, Ho, Wo)`` (sizes explicit: ``-1`` is ambiguous for ``N = 0``)."""
    per_group = y.size(-1)
    channels_first = y.view(groups, batch, out_h * out_w, per_group).permute(1, 0, 3, 2)  # (N, G, C_out / G, L)
    return channels_first.reshape(batch, groups * per_group, out_h, out_w)


class _AdderLayer(nn.Module):
    """What :class:`AddLinear` and :class:`AddConv2d` share: weight, bias, eta, budget, quantisation.

    Subclasses provide ``_check_input(shape, name)`` (validates an input shape, returns the number of
    output elements) and ``_dot_length`` (K of one adder dot product).
    """

    def __init__(
        self,
        weight_shape: Tuple[int, ...],
        bias: bool,
        eta: Optional[float],
        quant: Optional[QuantConfig],
        memory_budget_bytes: int,
    ) -> None:
        super().__init__()
        self.eta = positive_number("eta", eta, optional=True)
        self.memory_budget_bytes = positive_int("memory_budget_bytes", memory_budget_bytes)
        self.quant = quant
        self.operand_quant = SharedScaleFakeQuant(quant)
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.register_parameter("bias", nn.Parameter(torch.empty(weight_shape[0])) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weight as ``nn.Linear`` / ``nn.Conv2d`` (so shared weights start alike); zero bias."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def operand_bits(self) -> int:
        """Bit width of the subtracted operands (32 for float)."""
        return _FLOAT_BITS if self.quant is None else self.quant.bits

    def op_counts(self, input_shape: Sequence[int]) -> OpCounts:
        """One adder dot product (``2K - 1`` adds, +1 with bias) per output element, at :attr:`operand_bits`."""
        outputs = self._check_input(tuple(int(d) for d in input_shape), "input_shape")
        bias = self.bias is not None
        return OpCounts.dot_products(OpKind.ADD, self.operand_bits, outputs, self._dot_length, bias=bias)

    def _adder_repr(self) -> str:
        text = f"bias={self.bias is not None}, eta={self.eta}"
        return text if self.quant is None else text + f", quant_bits={self.quant.bits}"


class AddLinear(_AdderLayer, DerivedTensorOwner):
    """Adder linear layer: ``y[..., m] = -sum_k |q(x)[..., k] - q(w)[m, k]| + b[m]``.

    ``q`` is the identity, or with ``quant`` the shared-grid fake quantisation of
    :class:`SharedScaleFakeQuant`. Backward: see :func:`add_matmul` (surrogate gradients, adaptive weight
    gradient scale ``eta``).

    Shape: x (*, in_features) -> y (*, out_features); weight (out_features, in_features).

    Args:
        in_features: input width K.
        out_features: output width M.
        bias: add a learnable bias (initialised to 0).
        eta: adaptive gradient scale of the weight (None: off).
        quant: fake-quantise input and weight on one shared symmetric grid.
        memory_budget_bytes: upper bound of the temporaries of forward and input gradient.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        eta: Optional[float] = 0.2,
        quant: Optional[QuantConfig] = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    ) -> None:
        shape = (positive_int("out_features", out_features), positive_int("in_features", in_features))
        super().__init__(shape, bias, eta, quant, memory_budget_bytes)
        self.in_features = in_features
        self.out_features = out_features
        self._prepared = CompanionCache()  # the CPU forward's weight-only work, kept at inference

    def derived_caches(self) -> Tuple[CompanionCache]:
        return (self._prepared,)

    @property
    def _dot_length(self) -> int:
        return self.in_features

    def _check_input(self, shape: Sequence[int], name: str) -> int:
        """Validate ``(*, in_features)``; return the number of output elements."""
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"{name} must have shape (*, in_features={self.in_features}), got {tuple(shape)}")
        return math.prod(shape[:-1]) * self.out_features

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x.shape, "x")
        if self.quant is None:  # kept at inference: the (1, M, K) view and the CPU forward's weight-only work
            weight, prepared = self._prepared.read(self.weight, lambda w: prepared_add_weight(w, centred=False)) or \
                (self.weight[None], None)
        else:  # quantised weights change with every input's scale
            x, weight = self.operand_quant(x, self.weight)
            weight, prepared = weight[None], None
        y = add_matmul(x.reshape(1, -1, self.in_features), weight, self.eta, self.memory_budget_bytes,
                       prepared=prepared)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " + self._adder_repr()


class AddConv2d(Conv2dAttributes, _AdderLayer):
    """Adder 2-D convolution (zero padding): each output is ``-sum |patch - w[o]|`` over its receptive field.

    ``y[b, o, i, j] = -sum_{c, u, v} |x_pad[b, g*C_g + c, i*s_h + u*d_h, j*s_w + v*d_w] - w[o, c, u, v]| + b[o]``
    for output channel ``o`` in group ``g`` (``C_g = in_channels / groups``); padded zeros take part in the
    distance. Computed as :func:`add_matmul` over unfolded patches with ``G = groups``, so a depthwise conv
    (``groups = in_channels = out_channels``) costs ``kh * kw`` per output, not a dense conv's.
    Quantisation and backward as :class:`AddLinear`.

    Shape: x (N, C_in, H, W) -> y (N, C_out, H_out, W_out) with
    ``H_out = floor((H + 2*pad_h - dil_h*(kh - 1) - 1) / stride_h) + 1`` (likewise W);
    weight (C_out, C_in / groups, kh, kw).

    Args:
        in_channels, out_channels: channel counts (both divisible by ``groups``).
        kernel_size, stride, padding, dilation: an int or an (h, w) pair each.
        groups: number of channel groups.
        bias, eta, quant, memory_budget_bytes: as :class:`AddLinear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Tuple[int, int],
        stride: int | Tuple[int, int] = 1,
        padding: int | Tuple[int, int] = 0,
        dilation: int | Tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        eta: Optional[float] = 0.2,
        quant: Optional[QuantConfig] = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    ) -> None:
        geometry = Conv2dGeometry.create(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        super().__init__(geometry.weight_shape, bias, eta, quant, memory_budget_bytes)
        self.geometry = geometry

    @property
    def _dot_length(self) -> int:
        return self.geometry.dot_length

    def _check_input(self, shape: Sequence[int], name: str) -> int:
        """Validate ``(N, in_channels, H, W)`` with a non-empty output; return the number of output elements."""
        return self.geometry.check_input(shape, name)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x.shape, "x")
        x, weight = self.operand_quant(x, self.weight)
        y = add_conv2d(x, weight, self.stride, self.padding, self.dilation, self.groups, self.eta,
                       self.memory_budget_bytes)
        return y if self.bias is None else y + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, " + self._adder_repr()
        )
