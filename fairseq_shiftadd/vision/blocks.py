"""Blocks of the hybrid vision networks (ShiftAddNAS, arXiv 2205.08119), on the operators of :mod:`..ops`.

A block is a residual bottleneck, one structure for every type (:func:`residual_bottleneck`)::

    y = relu(bn3(L3(relu(bn2(L2(relu(bn1(L1(x))))))))  +  shortcut(x))

``conv`` / ``shift`` / ``add``: L1 is a 1x1, L2 a 3x3 (carrying the stride), L3 a 1x1 convolution, all with
the block's operator (``nn.Conv2d`` / :class:`~..ops.ShiftConv2d` / :class:`~..ops.AddConv2d`; in the supernet
their functional cores on sliced shared weights). ``attention``: L2 is multi-head self-attention over the
``H x W`` positions (:func:`self_attention`, the correct ``softmax(q k^T / sqrt(d)) v``; the original applied
the transposed matrix) with 1x1 multiplicative q/k/v projections, followed by a 2x2 average pool when the
block downsamples (as BoTNet). Deliberate deviation: no relative position encoding (the preceding
convolutions' zero padding carries position). The shortcut is the identity, or a 1x1 multiplicative
convolution + BatchNorm when the stride or the width changes (as ResNet's downsample).

Elastic pieces for the supernet: :class:`ElasticConv` (a :class:`~..ops.SharedWeight` slot of the largest
shape, front-sliced ``W[:out, :in]`` by :func:`~..ops.slice_linear`) and :class:`ElasticBatchNorm` (the first
``C`` statistics and affine parameters). :class:`StaticBlock` is one block of a standalone network. No fairseq.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import AddConv2d, GradNorm, OpKind, SharedWeight, ShiftConv2d, add_conv2d, slice_linear
from .space import VisionBlock

__all__ = [
    "residual_bottleneck",
    "self_attention",
    "SUPERNET_ADD_ETA",
    "DEFAULT_SHIFT_MODE",
    "conv_by_op",
    "make_conv",
    "load_conv_weight",
    "ElasticConv",
    "ElasticBatchNorm",
    "StaticBlock",
    "needs_projection",
    "block_norms",
    "candidate_ops",
    "attention_slots",
]

Layer = Callable[[Tensor], Tensor]


def residual_bottleneck(x: Tensor, layers: Sequence[Layer], norms: Sequence[Layer],
                        shortcut: Optional[Layer]) -> Tensor:
    """``relu(norm_k(L_k(... relu(norm_1(L_1(x))))) + shortcut(x))``: ReLU after every norm but the last.

    Shape: x (N, C_in, H, W) -> (N, C_out, H', W'); ``shortcut`` None is the identity.
    """
    h = x
    for i, (layer, norm) in enumerate(zip(layers, norms)):
        h = norm(layer(h))
        if i < len(layers) - 1:
            h = F.relu(h)
    return F.relu(h + (x if shortcut is None else shortcut(x)))


def self_attention(x: Tensor, q: Layer, k: Layer, v: Layer, heads: int, stride: int) -> Tensor:
    """Multi-head self-attention over the positions of a feature map, then ``stride x stride`` average pooling.

    Per head ``h`` (``d = D / heads``): ``out_h = softmax(Q_h K_h^T / sqrt(d)) V_h`` with ``Q_h, K_h, V_h`` of shape
    ``(H*W, d)``, i.e. row ``i`` of the result is ``sum_j p_ij v_j`` with ``p_i = softmax_j(q_i . k_j / sqrt(d))``.

    Shape: x (N, C, H, W); q, k, v map it to (N, D, H, W) -> (N, D, H / stride, W / stride).
    """
    batch, _, height, width = x.shape
    query, key, value = (f(x).reshape(batch, heads, -1, height * width).transpose(2, 3) for f in (q, k, v))
    scores = query @ key.transpose(2, 3) / math.sqrt(query.shape[-1])  # (N, heads, HW, HW)
    out = (scores.softmax(dim=-1) @ value).transpose(2, 3).reshape(batch, -1, height, width)
    return out if stride == 1 else F.avg_pool2d(out, stride)


SUPERNET_ADD_ETA = 1.0
"""Adaptive gradient scale of the supernet's adder weights: ``||dw||`` is this times a multiplicative layer's
weight-gradient norm ``||g^T x||_F`` (:attr:`~..ops.GradNorm.MULT`), the translation supernet's rule."""


DEFAULT_SHIFT_MODE = "q"
"""DeepShift mode of standalone shift blocks: ``"q"``, a real latent weight rounded to a signed power of two in
each forward pass (straight-through gradient), as the supernet's shift candidates and the translation models read
their weights. Not ``"ps"`` (trainable exponent and sign): under the vision recipe's AdamW (lr 3e-3, about 1,600
updates on the digits) an update moves an exponent by about the learning rate, while a weight changes only when
its exponent moves across a rounding boundary, 0.5 away at most, so PS weights learn slowly. Retrained from scratch on
the digits with the benchmark's recipe (widths 24 / 48 x 2 / 64, shift blocks in the two upper stages), PS reached
98.1 / 98.5 / 98.1 % validation accuracy for seeds 1 / 2 / 3, Q 99.6 / 99.3 / 99.6 % and the same widths as
all-conv 99.6 / 99.6 / 99.3 % (README, "Vision: digits", the shift-mode table)."""


def conv_by_op(op: OpKind, x: Tensor, weight: Tensor, stride: int) -> Tensor:
    """A bias-free, ``k // 2``-padded convolution of ``x`` with ``weight`` computed by ``op`` (the supernet's).

    mult and shift: ``F.conv2d`` (a shift weight is already a signed power of two, as
    :meth:`SharedWeight.weight_for` returns it); add: :func:`~..ops.add_conv2d` with its weight gradient scaled
    to :data:`SUPERNET_ADD_ETA` times the norm a multiplicative layer's would have (``GradNorm.MULT``), not
    to AdderNet's fixed ``0.2 sqrt(numel(w))``: in a weight-sharing supernet the add candidate updates the
    weight (and the Adam moments) that the mult candidate reads, so its steps must be of the mult steps' size.
    At initialisation AdderNet's scale gave the digits supernet's add candidates weight gradients about 3x the
    conv candidate's on the same weight; trained with it, the supernet's largest subnet reached 93.0 %
    inherited validation accuracy against 95.6 % with this rule (``benchmarks/vision_proxy.py --ablate
    addernet-grad`` vs the default; README, "Vision: digits").

    Shape: x (N, C_in, H, W), weight (C_out, C_in, k, k) -> (N, C_out, H / stride, W / stride).
    """
    padding = weight.shape[-1] // 2
    if op is OpKind.ADD:
        return add_conv2d(x, weight, stride, padding, eta=SUPERNET_ADD_ETA, grad_norm=GradNorm.MULT)
    return F.conv2d(x, weight, None, stride, padding)


def make_conv(op: OpKind, in_channels: int, out_channels: int, kernel: int, stride: int, shift_mode: str) -> nn.Module:
    """The standalone layer that :func:`conv_by_op` computes: ``nn.Conv2d``, ``ShiftConv2d`` or ``AddConv2d``."""
    args = (in_channels, out_channels, kernel, stride, kernel // 2)
    if op is OpKind.ADD:
        return AddConv2d(*args, bias=False)
    if op is OpKind.SHIFT:
        return ShiftConv2d(*args, bias=False, mode=shift_mode)
    return nn.Conv2d(*args, bias=False)


@torch.no_grad()
def load_conv_weight(layer: nn.Module, weight: Tensor) -> None:
    """Give a layer of :func:`make_conv` the weight ``weight`` computes with (shift: via ``load_float_weight``)."""
    if isinstance(layer, ShiftConv2d):
        layer.load_float_weight(weight)
    else:
        layer.weight.copy_(weight)


class ElasticConv(nn.Module):
    """A convolution slot of the largest shape, shared by the operator candidates of one layer.

    The candidates read :meth:`SharedWeight.weight_for` (sharing mode none / shared / heterogeneous), sliced
    to ``W[:out, :in]`` (:func:`~..ops.slice_linear`; ``in`` is read from the input).

    Shape: x (N, C_in <= max_in, H, W) -> (N, out, H / stride, W / stride); weight (max_out, max_in, k, k).
    """

    def __init__(self, max_in: int, max_out: int, kernel: int, ops: Sequence[OpKind], mode: str) -> None:
        super().__init__()
        self.kernel = kernel
        self.shared = SharedWeight((max_out, max_in, kernel, kernel), ops, mode)

    def weight(self, op: OpKind, out_channels: int, in_channels: int) -> Tensor:
        """The sliced weight candidate ``op`` computes with."""
        return slice_linear(self.shared.weight_for(op), None, out_channels, in_channels)[0]

    def forward(self, x: Tensor, op: OpKind, out_channels: int, stride: int = 1) -> Tensor:
        return conv_by_op(op, x, self.weight(op, out_channels, x.shape[1]), stride)


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first ``C`` channels of a max-size layer (running statistics and affine parameters).

    Training updates the slices of the running statistics in place (``momentum=None``: cumulative average).

    Shape: x (N, C <= num_features, H, W) -> same.
    """

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean[:channels], self.running_var[:channels], self.weight[:channels],
                            self.bias[:channels], self.training, momentum, self.eps)

    @torch.no_grad()
    def export(self, channels: int) -> nn.BatchNorm2d:
        """A standalone ``nn.BatchNorm2d(channels)`` with this layer's first ``channels`` entries."""
        bn = nn.BatchNorm2d(channels, self.eps, self.momentum)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).copy_(getattr(self, name)[:channels])
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


def needs_projection(in_channels: int, out_channels: int, stride: int) -> bool:
    """Whether a block's shortcut is a 1x1 convolution (stride or width changes) rather than the identity."""
    return stride != 1 or in_channels != out_channels


class StaticBlock(nn.Module):
    """One block of a standalone network (see the module docstring), with exactly its parameters.

    Shape: x (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).

    Args:
        block: the block type.
        in_channels, mid_channels, out_channels: channel counts.
        stride: 1 or 2.
        heads: attention heads (attention blocks).
        shift_mode: :class:`~..ops.ShiftConv2d` mode of shift blocks (``"q"`` or ``"ps"``).
    """

    def __init__(self, block: VisionBlock, in_channels: int, mid_channels: int, out_channels: int, stride: int,
                 heads: int, shift_mode: str = DEFAULT_SHIFT_MODE) -> None:
        super().__init__()
        self.block, self.stride, self.heads = block, stride, heads
        if block is VisionBlock.ATTENTION:
            self.reduce = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
            self.q, self.k, self.v = (nn.Conv2d(mid_channels, mid_channels, 1, bias=False) for _ in range(3))
            self.expand = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        else:
            self.reduce = make_conv(block.op, in_channels, mid_channels, 1, 1, shift_mode)
            self.spatial = make_conv(block.op, mid_channels, mid_channels, 3, stride, shift_mode)
            self.expand = make_conv(block.op, mid_channels, out_channels, 1, 1, shift_mode)
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in (mid_channels, mid_channels, out_channels))
        self.shortcut = None
        if needs_projection(in_channels, out_channels, stride):
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        if self.block is VisionBlock.ATTENTION:
            middle = lambda h: self_attention(h, self.q, self.k, self.v, self.heads, self.stride)  # noqa: E731
        else:
            middle = self.spatial
        return residual_bottleneck(x, (self.reduce, middle, self.expand), self.norms, self.shortcut)


@torch.no_grad()
def block_norms(max_mid: int, max_out: int) -> nn.ModuleList:
    """The three :class:`ElasticBatchNorm` of one supernet candidate (after L1, L2, L3), the last one's scale
    ``gamma`` initialised to 0 ("zero-init residual", Goyal et al. 2017, as Once-for-All's supernets).

    So every candidate starts as its shortcut (the identity, or the projection), and a subnet drawn at random
    starts as a shallow, well-conditioned network whatever its block types; each candidate then grows its
    residual branch. With ``gamma = 1`` (and AdderNet's add gradients) the digits supernet, whose block types
    are drawn uniformly per position, did not fit its training data: its largest subnet reached 66.3 %
    inherited validation accuracy (85.9 % with :data:`SUPERNET_ADD_ETA`'s gradients), against 95.6 % with
    both (``benchmarks/vision_proxy.py --ablate both|gamma-one`` vs the default; README, "Vision: digits").
    Standalone networks (:class:`StaticBlock`) keep ``gamma = 1``: they are trained alone, and their retraining
    recipe is unchanged.
    """
    norms = nn.ModuleList(ElasticBatchNorm(c) for c in (max_mid, max_mid, max_out))
    norms[-1].weight.zero_()
    return norms


def candidate_ops(blocks: Sequence[VisionBlock]) -> List[OpKind]:
    """The operators of the bottleneck candidates among ``blocks`` (attention excluded), in order."""
    return [b.op for b in blocks if b.op is not None]


def attention_slots(max_mid: int, mode: str) -> Dict[str, ElasticConv]:
    """The q, k, v projections of an attention candidate (multiplicative 1x1 slots)."""
    return {name: ElasticConv(max_mid, max_mid, 1, (OpKind.MULT,), mode) for name in ("q", "k", "v")}
