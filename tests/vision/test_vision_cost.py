"""Tests of the vision cost model (fairseq_shiftadd.vision.cost) against hand-computed counts."""
import pytest

from fairseq_shiftadd.cost.energy import part_energy_pj
from fairseq_shiftadd.cost.workload import Workload
from fairseq_shiftadd.ops.op_counts import OpCounts
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.vision.cost import VisionCostModel, as_multiplicative, subnet_parts
from fairseq_shiftadd.vision.space import VisionBlock, get_space, uniform_subnet

SPACE = get_space("digits")
WL = Workload()


def _block(kind: VisionBlock):
    """Stage 0 has one block: 16 -> mid 8 -> 16 channels at 8x8, stride 1 (identity shortcut)."""
    sub = uniform_subnet(SPACE, [16, 32, 48], [1, 1, 1], [kind, VisionBlock.CONV, VisionBlock.CONV], 0.5)
    return sub, [p for p in subnet_parts(SPACE, sub, WL) if p.name.startswith("stages.0.0.")]


# Hand counts of the block: reduce 512 outputs x 16 terms, spatial 512 x 72 (3x3x8), expand 1024 x 8.
TERMS = 512 * 16 + 512 * 72 + 1024 * 8  # 53248 products
ACCUMULATIONS = 512 * 15 + 512 * 71 + 1024 * 7  # 51200


@pytest.mark.parametrize("kind,expected", [
    (VisionBlock.CONV, {(OpKind.MULT, 32): TERMS, (OpKind.ADD, 32): ACCUMULATIONS}),
    (VisionBlock.SHIFT, {(OpKind.SHIFT, 32): TERMS, (OpKind.ADD, 32): ACCUMULATIONS}),
    (VisionBlock.ADD, {(OpKind.ADD, 32): TERMS + ACCUMULATIONS}),
])
def test_bottleneck_counts_by_hand(kind, expected):
    _, parts = _block(kind)
    assert [p.name for p in parts] == ["stages.0.0.reduce", "stages.0.0.spatial", "stages.0.0.expand",
                                       "stages.0.0.norm1", "stages.0.0.norm2", "stages.0.0.norm3"]
    assert OpCounts.total_of(p.ops for p in parts) == OpCounts(expected)
    assert sum(p.params for p in parts) == 16 * 8 + 8 * 8 * 9 + 8 * 16 + 2 * (8 + 8 + 16)


@pytest.mark.parametrize("kind,weight_bits,op_pj", [(VisionBlock.CONV, 32, 3.7 * 8192 + 0.9 * 7680),
                                                    (VisionBlock.SHIFT, 5, 0.13 * 8192 + 0.9 * 7680),
                                                    (VisionBlock.ADD, 32, 0.9 * (8192 + 7680))])
def test_reduce_layer_energy_by_hand(kind, weight_bits, op_pj):
    """The 1x1 reduce layer: 512 outputs x 16 terms, 128 weights, a 8x8x16 input and a 8x8x8 output."""
    _, parts = _block(kind)
    reduce = parts[0]
    weights, inputs, outputs = 128, 64 * 16, 64 * 8
    dram = weights * weight_bits / 16 * 200.0
    staged = (weights * weight_bits + (inputs + outputs) * 32) / 16 * (22.2 + 7.4)
    rf = 8192 * (3 * 32 + weight_bits) / 16 * 3.7
    profile = VisionCostModel(SPACE).profile
    assert sum(part_energy_pj(reduce, profile).values()) == pytest.approx(op_pj + dram + staged + rf)


def test_attention_counts_by_hand():
    # stage 2's attention block, width 48, expansion 0.5: mid 24, 4 heads of 6; it attends over its 4x4 input
    # (16 positions), then pools to 2x2
    sub = uniform_subnet(SPACE, [16, 32, 48], [1, 1, 1], [VisionBlock.CONV, VisionBlock.CONV, VisionBlock.ATTENTION],
                         0.5)
    parts = {p.name: p for p in subnet_parts(SPACE, sub, WL)}
    scores, mix = parts["stages.2.0.attention.scores"], parts["stages.2.0.attention.mix"]
    assert scores.ops == OpCounts.dot_products(OpKind.MULT, 32, 4 * 16 * 16, 6)
    assert mix.ops == OpCounts.dot_products(OpKind.MULT, 32, 16 * 24, 16)
    # q, k, v at 16 positions; the projection shortcut 32 -> 48 at the 2x2 output
    assert parts["stages.2.0.q"].ops == OpCounts.dot_products(OpKind.MULT, 32, 16 * 24, 24)
    assert parts["stages.2.0.shortcut"].ops == OpCounts.dot_products(OpKind.MULT, 32, 4 * 48, 32)


def test_metrics_and_the_conv_energy_ratio():
    model = VisionCostModel(SPACE)
    conv = uniform_subnet(SPACE, [24, 48, 64], [2, 2, 2], [VisionBlock.CONV] * 3, 1.0)
    shift = uniform_subnet(SPACE, [24, 48, 64], [2, 2, 2], [VisionBlock.SHIFT, VisionBlock.SHIFT, VisionBlock.CONV],
                           1.0)
    assert as_multiplicative(shift) == conv
    m_conv, m_shift = model.metrics(conv), model.metrics(shift)
    assert m_conv["conv_energy_ratio"] == 1.0 and m_conv["shifts"] == 0
    assert m_shift["conv_energy_ratio"] == pytest.approx(m_shift["energy_mj"] / m_conv["energy_mj"])
    assert m_shift["energy_mj"] < m_conv["energy_mj"] and m_shift["mults"] < m_conv["mults"]
    with pytest.raises(ValueError, match="bits=16 not in profile"):
        VisionCostModel(SPACE, bits=16)
