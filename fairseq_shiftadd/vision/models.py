"""Hybrid vision networks of ShiftAddNAS (arXiv 2205.08119): the weight-sharing supernet and standalone subnets.

* :class:`VisionSupernet`: every candidate of a :class:`~.space.VisionSpace` at its largest size. The
  bottleneck candidates (conv / shift / add) of one block position read one :class:`~..ops.SharedWeight` per
  layer (sharing mode ``none``, ``shared`` or ``heterogeneous``), front-sliced to the sampled widths; each
  candidate has its own BatchNorms (adder outputs have their own scale). ``set_subnet(sub)`` checks and
  selects a subnet, the forward pass runs it.
* :class:`VisionNet`: one subnet with exactly its parameters (``nn.Conv2d``, ``ShiftConv2d``, ``AddConv2d``,
  ``nn.BatchNorm2d``), built from the space and the subnet alone.
* :func:`extract_subnet`: the :class:`VisionNet` that computes what the supernet computes for a subnet
  (heterogeneous remaps baked into the weights; BatchNorm statistics sliced, so recalibrate them with
  :func:`recalibrate_batchnorm` first when the supernet's statistics come from other subnets).

Layout NCHW; the stem is a 3x3 convolution (+ BatchNorm, ReLU, optional 3x3/2 max pool), the head global
average pooling and a linear classifier (front-sliced in the supernet). No fairseq.
"""
from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import OpKind, SharingMode, slice_linear
from .blocks import (
    DEFAULT_SHIFT_MODE,
    ElasticBatchNorm,
    ElasticConv,
    StaticBlock,
    attention_slots,
    block_norms,
    candidate_ops,
    load_conv_weight,
    needs_projection,
    residual_bottleneck,
    self_attention,
)
from .space import BlockConfig, VisionBlock, VisionSpace, VisionSubnet, check, largest, mid_channels

__all__ = ["VisionSupernet", "VisionNet", "extract_subnet", "recalibrate_batchnorm", "make_stem", "check_images"]


def make_stem(space: VisionSpace) -> nn.Sequential:
    """3x3 conv (stride ``stem_stride``) + BatchNorm + ReLU (+ 3x3 max pool of stride 2 if ``stem_pool``)."""
    layers: List[nn.Module] = [
        nn.Conv2d(space.in_channels, space.stem_channels, 3, space.stem_stride, 1, bias=False),
        nn.BatchNorm2d(space.stem_channels),
        nn.ReLU(),
    ]
    if space.stem_pool:
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


def check_images(space: VisionSpace, x: Tensor) -> None:
    """Raises ValueError (one line) unless ``x`` is ``(N, in_channels, image_size, image_size)`` of ``space``."""
    expected = (space.in_channels, space.image_size, space.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"images of shape {tuple(x.shape)} do not fit space {space.name!r}: expected (N, "
                         f"{expected[0]}, {expected[1]}, {expected[2]}) (in_channels, image_size, image_size)")


def _classify(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return F.linear(features.mean(dim=(2, 3)), weight, bias)


class _SuperBlock(nn.Module):
    """All candidates of one block position, at their largest sizes (see the module docstring)."""

    def __init__(self, blocks: Sequence[VisionBlock], max_in: int, max_mid: int, max_out: int, heads: int,
                 mode: str, first: bool) -> None:
        super().__init__()
        self.heads = heads
        ops = candidate_ops(blocks)
        self.layers = nn.ModuleList()
        if ops:
            self.layers.extend(ElasticConv(i, o, k, ops, mode)
                               for i, o, k in ((max_in, max_mid, 1), (max_mid, max_mid, 3), (max_mid, max_out, 1)))
        self.attention = nn.ModuleDict()
        if VisionBlock.ATTENTION in blocks:
            self.attention.update({"reduce": ElasticConv(max_in, max_mid, 1, (OpKind.MULT,), mode),
                                   **attention_slots(max_mid, mode),
                                   "expand": ElasticConv(max_mid, max_out, 1, (OpKind.MULT,), mode)})
        self.norms = nn.ModuleDict({b.value: block_norms(max_mid, max_out) for b in blocks})
        self.shortcut = None
        if first:
            self.shortcut = nn.ModuleDict({"conv": ElasticConv(max_in, max_out, 1, (OpKind.MULT,), mode),
                                           "norm": ElasticBatchNorm(max_out)})

    def _layers(self, block: VisionBlock, mid: int, width: int, stride: int) -> List[Callable[[Tensor], Tensor]]:
        if block is VisionBlock.ATTENTION:
            att = self.attention
            projections = [lambda h, name=name: att[name](h, OpKind.MULT, mid) for name in ("q", "k", "v")]
            return [lambda h: att["reduce"](h, OpKind.MULT, mid),
                    lambda h: self_attention(h, *projections, self.heads, stride),
                    lambda h: att["expand"](h, OpKind.MULT, width)]
        reduce, spatial, expand = self.layers
        return [lambda h: reduce(h, block.op, mid), lambda h: spatial(h, block.op, mid, stride),
                lambda h: expand(h, block.op, width)]

    def forward(self, x: Tensor, config: BlockConfig, width: int, stride: int) -> Tensor:
        mid = mid_channels(width, config.expansion)
        shortcut = None
        if needs_projection(x.shape[1], width, stride):
            shortcut = lambda h: self.shortcut["norm"](self.shortcut["conv"](h, OpKind.MULT, width, stride))  # noqa: E731
        return residual_bottleneck(x, self._layers(config.block, mid, width, stride), self.norms[config.block.value],
                                   shortcut)

    @torch.no_grad()
    def export(self, config: BlockConfig, in_channels: int, width: int, stride: int, shift_mode: str) -> StaticBlock:
        """The :class:`StaticBlock` computing what :meth:`forward` computes for ``config``."""
        mid = mid_channels(width, config.expansion)
        block = StaticBlock(config.block, in_channels, mid, width, stride, self.heads, shift_mode)
        if config.block is VisionBlock.ATTENTION:
            pairs = [(block.reduce, self.attention["reduce"], mid, in_channels)]
            pairs += [(getattr(block, n), self.attention[n], mid, mid) for n in ("q", "k", "v")]
            pairs.append((block.expand, self.attention["expand"], width, mid))
            op = OpKind.MULT
        else:
            pairs = list(zip((block.reduce, block.spatial, block.expand), self.layers,
                             (mid, mid, width), (in_channels, mid, mid)))
            op = config.block.op
        for layer, slot, out_c, in_c in pairs:
            load_conv_weight(layer, slot.weight(op, out_c, in_c))
        block.norms = nn.ModuleList(n.export(c) for n, c in zip(self.norms[config.block.value], (mid, mid, width)))
        if block.shortcut is not None:
            load_conv_weight(block.shortcut[0], self.shortcut["conv"].weight(OpKind.MULT, width, in_channels))
            block.shortcut[1] = self.shortcut["norm"].export(width)
        return block


class VisionSupernet(nn.Module):
    """Every subnet of ``space`` in one weight-sharing network.

    Shape: x (N, in_channels, image_size, image_size) -> logits (N, num_classes).

    Args:
        space: the search space.
        sharing: ``"none"``, ``"shared"`` or ``"heterogeneous"`` (:class:`~..ops.SharingMode`).

    Raises:
        ValueError: an unknown sharing mode.
    """

    def __init__(self, space: VisionSpace, sharing: str = "heterogeneous") -> None:
        super().__init__()
        self.space = space
        self.sharing = SharingMode(sharing) if sharing in [m.value for m in SharingMode] else None
        if self.sharing is None:
            raise ValueError(f"sharing={sharing!r} not in allowed values {tuple(m.value for m in SharingMode)}")
        self.stem = make_stem(space)
        max_expansion = max(space.expansions)
        self.stages = nn.ModuleList()
        max_in = space.stem_channels
        for stage in space.stages:
            max_out = max(stage.widths)
            blocks = nn.ModuleList(
                _SuperBlock(stage.blocks, max_in if j == 0 else max_out, mid_channels(max_out, max_expansion),
                            max_out, space.heads, self.sharing.value, first=j == 0)
                for j in range(max(stage.depths)))
            self.stages.append(blocks)
            max_in = max_out
        self.classifier = nn.Linear(max_in, space.num_classes)
        self.subnet = largest(space)

    def set_subnet(self, subnet: VisionSubnet) -> None:
        """Select the subnet the forward pass runs (checked against the space)."""
        self.subnet = check(self.space, subnet)

    def forward(self, x: Tensor, subnet: Optional[VisionSubnet] = None) -> Tensor:
        """Logits of ``subnet`` (default: the one of :meth:`set_subnet`)."""
        subnet = self.subnet if subnet is None else check(self.space, subnet)
        check_images(self.space, x)
        h = self.stem(x)
        for blocks, config, stage in zip(self.stages, subnet.stages, self.space.stages):
            for j, block_config in enumerate(config.blocks):
                h = blocks[j](h, block_config, config.width, stage.stride if j == 0 else 1)
        weight, bias = slice_linear(self.classifier.weight, self.classifier.bias, self.space.num_classes, h.shape[1])
        return _classify(h, weight, bias)

    def sharing_regulariser(self, subnets: Sequence[VisionSubnet]) -> Tensor:
        """Sum of :meth:`SharedWeight.regulariser` over the slots that ``subnets`` read with ``add`` (each once).

        Non-zero only in heterogeneous mode: a slot's ``T_add`` is pulled toward Laplace in the updates that
        train its add candidate (as the translation supernet does).
        """
        slots = {}
        for subnet in subnets:
            for blocks, config in zip(self.stages, subnet.stages):
                for block, block_config in zip(blocks, config.blocks):
                    if block_config.block is VisionBlock.ADD:
                        slots.update({id(layer): layer.shared for layer in block.layers})
        terms = [shared.regulariser() for shared in slots.values()]
        return torch.stack(terms).sum() if terms else self.classifier.weight.new_zeros(())


class VisionNet(nn.Module):
    """One subnet of ``space`` as a standalone network with exactly its parameters.

    Shape: x (N, in_channels, image_size, image_size) -> logits (N, num_classes).

    Args:
        space: the search space (its input size, channels, classes, stem, strides and heads).
        subnet: the network (checked against ``space``).
        shift_mode: :class:`~..ops.ShiftConv2d` mode of shift blocks.
    """

    def __init__(self, space: VisionSpace, subnet: VisionSubnet, shift_mode: str = DEFAULT_SHIFT_MODE) -> None:
        super().__init__()
        self.space, self.subnet, self.shift_mode = space, check(space, subnet), shift_mode
        self.stem = make_stem(space)
        self.stages = nn.ModuleList()
        in_channels = space.stem_channels
        for config, stage in zip(subnet.stages, space.stages):
            blocks = nn.ModuleList()
            for j, block in enumerate(config.blocks):
                blocks.append(StaticBlock(block.block, in_channels, mid_channels(config.width, block.expansion),
                                          config.width, stage.stride if j == 0 else 1, space.heads, shift_mode))
                in_channels = config.width
            self.stages.append(blocks)
        self.classifier = nn.Linear(in_channels, space.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_images(self.space, x)
        h = self.stem(x)
        for blocks in self.stages:
            for block in blocks:
                h = block(h)
        return _classify(h, self.classifier.weight, self.classifier.bias)


@torch.no_grad()
def extract_subnet(supernet: VisionSupernet, subnet: VisionSubnet, shift_mode: str = DEFAULT_SHIFT_MODE) -> VisionNet:
    """The :class:`VisionNet` computing what ``supernet`` computes for ``subnet`` (same outputs in eval mode)."""
    space = supernet.space
    net = VisionNet(space, subnet, shift_mode)
    net.stem.load_state_dict(supernet.stem.state_dict())
    in_channels = space.stem_channels
    for super_blocks, blocks, config, stage in zip(supernet.stages, net.stages, subnet.stages, space.stages):
        for j, block in enumerate(config.blocks):
            blocks[j] = super_blocks[j].export(block, in_channels, config.width, stage.stride if j == 0 else 1,
                                               shift_mode)
            in_channels = config.width
    weight, bias = slice_linear(supernet.classifier.weight, supernet.classifier.bias, space.num_classes, in_channels)
    net.classifier.weight.copy_(weight)
    net.classifier.bias.copy_(bias)
    return net.to(supernet.classifier.weight.device)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor], forward: Optional[Callable] = None) -> None:
    """Re-estimate every BatchNorm's running statistics on ``batches`` (cumulative average), then eval mode.

    A supernet's statistics mix many subnets; a sampled subnet's own statistics (OFA) make its validation
    loss meaningful. ``forward(x)`` defaults to ``model(x)``.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x in batches:
        (forward or model)(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
