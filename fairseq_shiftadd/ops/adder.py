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
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from .counts import OpCounts
from .kinds import OpKind
from .quant import QuantConfig, RunningRange, fake_quant_symmetric
from .validate import Conv2dAttributes, Conv2dGeometry, positive_int

__all__ = ["add_matmul", "add_conv2d", "SharedScaleFakeQuant", "AddLinear", "AddConv2d"]

DEFAULT_MEMORY_BUDGET_BYTES = 256 * 2**20
# CPU tiling, whatever the budget (measured on a 2-core AMD EPYC, 512 KiB L2 per core, 32 MiB L3): a tile's
# temporary of 4 MiB stays in the last-level cache (about 2x faster than 16 MiB and up, and than 1 MiB where
# per-op overhead dominates), and the block of weight rows it reads fits a core's L2.
_CACHE_TILE_BYTES = 4 * 2**20
_WEIGHT_BLOCK_BYTES = 2**19
_MANY_WEIGHT_ROWS = 8
_FLOAT_BITS = 32
_Tile = Tuple[slice, slice, slice, Tensor]


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


def _weight_grad(grad: Tensor, x: Tensor, weight: Tensor, eta: Optional[float]) -> Tensor:
    """``dw = g^T x - w * sum_n g`` (two matmuls; x, w centred), then ``eta * sqrt(numel(w)) / ||dw||_2 * dw``."""
    dw = torch.matmul(grad.transpose(1, 2), x).sub_(weight * grad.sum(dim=1)[:, :, None])
    if eta is not None:
        dw.mul_(eta * math.sqrt(dw.numel()) / torch.linalg.vector_norm(dw).clamp_min(torch.finfo(dw.dtype).tiny))
    return dw


class _AddMatmul(torch.autograd.Function):
    """Autograd wrapper of the negative L1 "matmul" with AdderNet's surrogate backward."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, eta: Optional[float], max_bytes: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.eta, ctx.max_bytes = eta, max_bytes
        return _neg_l1(x, weight, max_bytes)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:
        x, weight = _centred(*ctx.saved_tensors)  # for dw (and dx) against cancellation; O((N + M) K)
        grad = grad.contiguous()
        dx = _input_grad(grad, x, weight, ctx.max_bytes) if ctx.needs_input_grad[0] else None
        dw = _weight_grad(grad, x, weight, ctx.eta) if ctx.needs_input_grad[1] else None
        return dx, dw, None, None


def add_matmul(
    x: Tensor, weight: Tensor, eta: Optional[float] = 0.2, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
) -> Tensor:
    """Batched negative L1 distance ``y[g, n, m] = -sum_k |x[g, n, k] - w[g, m, k]|``, memory-bounded.

    Backward (AdderNet surrogate; ``g`` is the output gradient):

    * ``dw[g, m, k] = sum_n g[g, n, m] * (x[g, n, k] - w[g, m, k]) = (g^T x) - w * sum_n g`` (two matmuls),
      then, if ``eta`` is not None, ``dw <- eta * sqrt(numel(w)) / ||dw||_2 * dw`` (norm over all of ``w``);
    * ``dx[g, n, k] = sum_m g[g, n, m] * hardtanh(w[g, m, k] - x[g, n, k])``.

    The forward pass and ``dx`` work on tiles whose ``(G', n, m, K)`` temporary stays under
    ``memory_budget_bytes`` (at least one K-long row); the result does not depend on the tiling beyond
    float rounding of the sums.

    Shape: x (G, N, K), weight (G, M, K) -> y (G, N, M).

    Args:
        x: inputs, float32 or float64, any strides.
        weight: weights, same dtype and device as ``x``.
        eta: adaptive gradient scale of the weight (None: unscaled surrogate gradient).
        memory_budget_bytes: upper bound of a tile's temporary.

    Raises:
        ValueError: shapes, dtypes, ``eta`` or ``memory_budget_bytes`` are invalid (the message names which).
    """
    shapes = f"{tuple(x.shape)} and {tuple(weight.shape)}"
    if x.dim() != 3 or weight.dim() != 3:
        raise ValueError(f"x and weight must be 3-D (G, N, K) and (G, M, K), got {shapes}")
    if x.shape[0] != weight.shape[0] or x.shape[2] != weight.shape[2]:
        raise ValueError(f"x (G, N, K) and weight (G, M, K) disagree on G or K: {shapes}")
    if x.dtype != weight.dtype or not x.is_floating_point():
        raise ValueError(f"x and weight must share one float dtype, got {x.dtype} and {weight.dtype}")
    _check_eta(eta)
    return _AddMatmul.apply(x, weight, eta, positive_int("memory_budget_bytes", memory_budget_bytes))


def add_conv2d(
    x: Tensor,
    weight: Tensor,
    stride: int | Tuple[int, int] = 1,
    padding: int | Tuple[int, int] = 0,
    dilation: int | Tuple[int, int] = 1,
    groups: int = 1,
    eta: Optional[float] = 0.2,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
) -> Tensor:
    """Adder 2-D convolution over an explicit weight (the functional core of :class:`AddConv2d`).

    ``y[b, o, i, j] = -sum_{c, u, v} |x_pad[b, g*C_g + c, i*s_h + u*d_h, j*s_w + v*d_w] - w[o, c, u, v]|``
    (zero padding; ``g`` the group of ``o``): :func:`add_matmul` over unfolded patches with ``G = groups``,
    so the backward is AdderNet's surrogate and no ``N x M x K`` tensor is built. Weight-shared supernets
    call it with a sliced or remapped weight.

    Shape: x (N, C_in, H, W), weight (C_out, C_in / groups, kh, kw) -> y (N, C_out, H_out, W_out).

    Raises:
        ValueError: the geometry is invalid or ``x`` does not fit it (the message names the argument).
    """
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in / groups, kh, kw), got {tuple(weight.shape)}")
    out_channels, group_channels, kh, kw = weight.shape
    geometry = Conv2dGeometry.create(
        group_channels * positive_int("groups", groups), out_channels, (kh, kw), stride, padding, dilation, groups
    )
    geometry.check_input(x.shape, "x")
    batch, _, height, width = x.shape
    out_h, out_w = geometry.output_size(height, width)
    patches = F.unfold(x, geometry.kernel_size, geometry.dilation, geometry.padding, geometry.stride)
    length = geometry.dot_length
    patches = patches.view(batch, groups, length, -1).permute(1, 0, 3, 2).reshape(groups, -1, length)
    y = add_matmul(patches, weight.reshape(groups, -1, length), eta, memory_budget_bytes)  # (G, N*L, C_out/G)
    return y.view(groups, batch, out_h * out_w, -1).permute(1, 0, 3, 2).reshape(batch, -1, out_h, out_w)


def _check_eta(eta: Optional[float]) -> Optional[float]:
    if eta is not None and (isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta > 0):
        raise ValueError(f"eta must be None or a positive number, got {eta!r}")
    return eta


class SharedScaleFakeQuant(nn.Module):
    """Fake-quantises an adder layer's input and weight onto ONE symmetric grid; identity if disabled.

    ``|x - w|`` is computed in hardware as an integer subtraction, which is only meaningful when ``x`` and
    ``w`` are integers on the same grid. So, unlike multiplicative layers (per-channel weight scales, affine
    activations; a product rescales afterwards), both use one per-tensor symmetric scale
    ``s = max(|low|, |high|, max|w|) / (2^(b-1) - 1)``, with ``[low, high]`` the running input range (EMA of
    the batch min/max in training, frozen in eval; :class:`~fairseq_shiftadd.ops.quant.RunningRange`).
    Gradients: clipped straight-through.

    Shape: x any, weight any -> same shapes.
    """

    def __init__(self, config: Optional[QuantConfig]) -> None:
        super().__init__()
        self.config = config
        self.range = RunningRange(config.momentum) if config is not None else None

    def max_abs(self, x: Tensor, weight: Tensor) -> Tensor:
        """The grid's largest magnitude ``max(|low|, |high|, max|w|)`` (updates the running range)."""
        low, high = self.range(x)
        return torch.stack([low.abs(), high.abs(), weight.detach().abs().amax().to(low.dtype)]).amax()

    def forward(self, x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
        if self.config is None:
            return x, weight
        max_abs = self.max_abs(x, weight)
        bits = self.config.bits
        return fake_quant_symmetric(x, max_abs, bits), fake_quant_symmetric(weight, max_abs, bits)

    def extra_repr(self) -> str:
        return "disabled" if self.config is None else f"bits={self.config.bits}, shared symmetric scale"


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
        self.eta = _check_eta(eta)
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

    def _add_matmul(self, x: Tensor, weight: Tensor) -> Tensor:
        return add_matmul(x, weight, self.eta, self.memory_budget_bytes)

    def _adder_repr(self) -> str:
        text = f"bias={self.bias is not None}, eta={self.eta}"
        return text if self.quant is None else text + f", quant_bits={self.quant.bits}"


class AddLinear(_AdderLayer):
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
        x, weight = self.operand_quant(x, self.weight)
        y = self._add_matmul(x.reshape(1, -1, self.in_features), weight[None])
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
