"""Energy, analytical latency and counts of one image through a vision subnet (ShiftAddNAS, arXiv 2205.08119).

The network is split into :class:`~..cost.parts.Part` s priced by the translation cost model's own functions
(:func:`~..cost.energy.part_energy_pj` under a :class:`~..cost.profile.HardwareProfile`,
:func:`~..cost.analytical.part_cycles`), with the same rules:

* arithmetic: a convolution output is one dot product of length ``C_in * k * k`` computed by the layer's
  operator (:meth:`~..ops.OpCounts.dot_products`: mult ``K`` mults + ``K - 1`` adds, shift ``K`` shifts +
  ``K - 1`` adds, add ``2K - 1`` adds); attention adds its two matmuls ``Q K^T`` (``heads * T * T`` dot
  products of length ``d``) and ``P V`` (``T * D`` of length ``T``), ``T = H * W`` positions. Elementwise work
  (BatchNorm, ReLU, softmax, residual additions, pooling) is not counted, as for translation;
* memory traffic, batch 1: every weight is fetched from DRAM once per image (shift weights at
  ``shift_weight_bits``, others at ``bits``) and staged through the global buffer; each part reads its input
  feature map and writes its output once through the global buffer and the NoC (an attention matmul reads its
  two operands and writes its result); each dot-product term reads its two operands from the register file
  and reads + writes its partial sum. BatchNorm folds to a scale and a shift per channel at inference: those
  ``2 C`` values are fetched like weights.

``params`` counts what a deployed network stores: convolution and classifier weights (one per weight, also
for shift layers), the classifier bias and two BatchNorm values per channel. No fairseq.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Union

from ..cost.analytical import cycles_to_ms, part_cycles
from ..cost.parts import Part
from ..cost.energy import PJ_PER_MJ, part_energy_pj
from ..cost.profile import HardwareProfile, load_profile
from ..cost.workload import Workload
from ..ops.op_counts import OpCounts
from ..ops.kinds import OpKind
from .blocks import needs_projection
from .space import BlockConfig, StageConfig, VisionBlock, VisionSpace, VisionSubnet, check, mid_channels

__all__ = ["VISION_METRICS", "conv_part", "attention_parts", "norm_part", "subnet_parts", "as_multiplicative",
           "VisionCostModel"]

VISION_METRICS: Dict[str, str] = {
    "energy_mj": "energy of one image (mJ): operations plus DRAM, global-buffer, NoC and RF traffic",
    "analytical_latency_ms": "latency of one image (ms) on the profile's accelerator (roofline per part)",
    "params": "stored values of the standalone network (weights, classifier bias, 2 per BatchNorm channel)",
    "mults": "multiplications of one image (all bit widths)",
    "adds": "additions and subtractions of one image (all bit widths)",
    "shifts": "bit shifts of one image (all bit widths)",
    "conv_energy_ratio": "energy_mj / energy_mj of the same widths and depths with every shift and add block as conv",
}
"""Metric name -> one-line description (what :meth:`VisionCostModel.metrics` returns)."""


def _traffic(dram: int, staged: int, rf: int) -> Dict[str, int]:
    return {"dram": dram, "global_buffer": staged, "noc": staged, "rf": rf}


def conv_part(name: str, kind: OpKind, in_channels: int, out_channels: int, kernel: int, in_size: int,
              out_size: int, wl: Workload, bias: bool = False) -> Part:
    """A ``kernel x kernel`` convolution ``in_size^2 x C_in -> out_size^2 x C_out`` computed by ``kind``.

    A linear layer is the case ``kernel = in_size = out_size = 1``.
    """
    bits, weight_bits = wl.bits, wl.weight_bits(kind)
    outputs, length = out_size * out_size * out_channels, in_channels * kernel * kernel
    weights = out_channels * length
    streamed = weights * weight_bits + (out_channels * bits if bias else 0)
    moved = streamed + (in_size * in_size * in_channels + outputs) * bits
    terms = outputs * length
    rf = terms * (3 * bits + weight_bits) + (outputs * bits if bias else 0)
    return Part(name, kind.value, OpCounts.dot_products(kind, bits, outputs, length, bias=bias), {kind: terms},
                weights + (out_channels if bias else 0), _traffic(streamed, moved, rf))


def _matmul_part(name: str, outputs: int, length: int, read: int, wl: Workload) -> Part:
    """``outputs`` dot products of two activations of ``length`` terms; ``read`` operand values in."""
    terms, bits = outputs * length, wl.bits
    return Part(name, "attention", OpCounts.dot_products(OpKind.MULT, bits, outputs, length), {OpKind.MULT: terms},
                0, _traffic(0, (read + outputs) * bits, terms * 4 * bits))


def attention_parts(name: str, channels: int, size: int, heads: int, wl: Workload) -> List[Part]:
    """The two matmuls of self-attention over ``T = size^2`` positions of ``channels = heads * d`` channels."""
    positions, head_dim = size * size, channels // heads
    scores = heads * positions * positions
    return [_matmul_part(f"{name}.scores", scores, head_dim, 2 * positions * channels, wl),
            _matmul_part(f"{name}.mix", positions * channels, positions, scores + positions * channels, wl)]


def norm_part(name: str, channels: int, wl: Workload) -> Part:
    """A folded BatchNorm: ``2 C`` values fetched once (its elementwise work is not counted)."""
    return Part(name, "norm", OpCounts(), {}, 2 * channels, _traffic(2 * channels * wl.bits, 2 * channels * wl.bits, 0))


def _block_parts(name: str, block: VisionBlock, in_channels: int, mid: int, width: int, in_size: int,
                 stride: int, heads: int, wl: Workload) -> List[Part]:
    out_size = in_size // stride
    if block is VisionBlock.ATTENTION:
        parts = [conv_part(f"{name}.reduce", OpKind.MULT, in_channels, mid, 1, in_size, in_size, wl)]
        parts += [conv_part(f"{name}.{p}", OpKind.MULT, mid, mid, 1, in_size, in_size, wl) for p in "qkv"]
        parts += attention_parts(f"{name}.attention", mid, in_size, heads, wl)
        parts.append(conv_part(f"{name}.expand", OpKind.MULT, mid, width, 1, out_size, out_size, wl))
    else:
        parts = [conv_part(f"{name}.reduce", block.op, in_channels, mid, 1, in_size, in_size, wl),
                 conv_part(f"{name}.spatial", block.op, mid, mid, 3, in_size, out_size, wl),
                 conv_part(f"{name}.expand", block.op, mid, width, 1, out_size, out_size, wl)]
    parts += [norm_part(f"{name}.norm{i}", c, wl) for i, c in enumerate((mid, mid, width), 1)]
    if needs_projection(in_channels, width, stride):
        parts += [conv_part(f"{name}.shortcut", OpKind.MULT, in_channels, width, 1, in_size, out_size, wl),
                  norm_part(f"{name}.shortcut_norm", width, wl)]
    return parts


def subnet_parts(space: VisionSpace, sub: VisionSubnet, wl: Workload) -> List[Part]:
    """Every part of one image through ``sub`` (stem, blocks, classifier), in execution order."""
    check(space, sub)
    size = space.image_size // space.stem_stride
    parts = [conv_part("stem", OpKind.MULT, space.in_channels, space.stem_channels, 3, space.image_size, size, wl),
             norm_part("stem.norm", space.stem_channels, wl)]
    size //= 2 if space.stem_pool else 1
    in_channels = space.stem_channels
    for i, (config, stage) in enumerate(zip(sub.stages, space.stages)):
        for j, block in enumerate(config.blocks):
            stride = stage.stride if j == 0 else 1
            parts += _block_parts(f"stages.{i}.{j}", block.block, in_channels,
                                  mid_channels(config.width, block.expansion), config.width, size, stride,
                                  space.heads, wl)
            size //= stride
            in_channels = config.width
    parts.append(conv_part("classifier", OpKind.MULT, in_channels, space.num_classes, 1, 1, 1, wl, bias=True))
    return parts


def as_multiplicative(sub: VisionSubnet) -> VisionSubnet:
    """``sub`` with every shift and add block replaced by a conv block (widths, depths, expansions kept)."""
    return VisionSubnet(tuple(
        StageConfig(s.width, tuple(BlockConfig(VisionBlock.CONV if b.block in (VisionBlock.SHIFT, VisionBlock.ADD)
                                               else b.block, b.expansion) for b in s.blocks)) for s in sub.stages))


@dataclass
class VisionCostModel:
    """Cost metrics (:data:`VISION_METRICS`) of vision subnets under a hardware profile.

    Args:
        space: the search space.
        profile: a :class:`HardwareProfile`, a shipped profile's name or a YAML path (default ``45nm``).
        bits: operand width (a width of the profile).
        shift_weight_bits: stored width of shift weights.

    Raises:
        ValueError: an unknown profile or a bit width the profile lacks.
    """

    space: VisionSpace
    profile: Union[str, HardwareProfile] = "45nm"
    bits: int = 32
    shift_weight_bits: int = 5

    def __post_init__(self) -> None:
        self.profile = load_profile(self.profile)
        self.profile.check_bits(self.bits)
        self.workload = Workload(bits=self.bits, shift_weight_bits=self.shift_weight_bits)

    def _energy_pj(self, parts: List[Part]) -> float:
        return sum(sum(part_energy_pj(p, self.profile).values()) for p in parts)

    def metrics(self, sub: VisionSubnet) -> Dict[str, float]:
        """:data:`VISION_METRICS` of ``sub`` for one image."""
        parts = subnet_parts(self.space, sub, self.workload)
        ops = OpCounts.total_of(p.ops for p in parts)
        energy = self._energy_pj(parts)
        cycles = sum(part_cycles(p, self.profile.accelerator) for p in parts)
        return {
            "energy_mj": energy / PJ_PER_MJ,
            "analytical_latency_ms": cycles_to_ms(cycles, self.profile.accelerator),
            "params": float(sum(p.params for p in parts)),
            "mults": float(ops.count(OpKind.MULT)),
            "adds": float(ops.count(OpKind.ADD)),
            "shifts": float(ops.count(OpKind.SHIFT)),
            "conv_energy_ratio": energy / self._energy_pj(subnet_parts(self.space, as_multiplicative(sub),
                                                                        self.workload)),
        }
