"""OpCounts arithmetic and the dot-product counting rules."""
import pytest

from fairseq_shiftadd.ops.op_counts import OpCounts
from fairseq_shiftadd.ops.kinds import BlockType, OpKind


def test_dot_product_rules() -> None:
    mult = OpCounts.dot_products(OpKind.MULT, 32, outputs=6, length=4, bias=True)
    assert mult.count(OpKind.MULT) == 24 and mult.count(OpKind.ADD) == 6 * 4
    shift = OpCounts.dot_products(OpKind.SHIFT, 16, outputs=6, length=4)
    assert shift.count(OpKind.SHIFT, 16) == 24 and shift.count(OpKind.ADD, 16) == 18
    add = OpCounts.dot_products(OpKind.ADD, 8, outputs=6, length=4)
    assert add.count(OpKind.ADD, 8) == 6 * (2 * 4 - 1) and add.count(OpKind.MULT) == 0


def test_sum_scale_and_serialise() -> None:
    a = OpCounts.of(OpKind.MULT, 32, 5) + OpCounts.of(OpKind.ADD, 8, 2)
    b = 3 * a + OpCounts.of(OpKind.MULT, 32, 1)
    assert b.count(OpKind.MULT, 32) == 16 and b.count(OpKind.ADD, 8) == 6
    assert OpCounts.from_dict(b.to_dict()) == b
    assert b.to_dict() == {"add@8": 6, "mult@32": 16}
    assert OpCounts.total_of([]) == OpCounts()


def test_invalid_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        OpCounts.of(OpKind.ADD, 32, -1)
    with pytest.raises(ValueError, match="integer"):
        OpCounts.of(OpKind.ADD, 32, 1) * 1.5
    with pytest.raises(ValueError, match="kind@bits"):
        OpCounts.from_dict({"add32": 1})
    with pytest.raises(ValueError):
        OpCounts.of("divide", 32, 1)


def test_block_type_helpers() -> None:
    assert BlockType("attention+lightweight_add").has_attention
    assert BlockType("attention+lightweight_add").lightweight_part is BlockType.LIGHTWEIGHT_ADD
    assert BlockType.ATTENTION.lightweight_part is None
    assert not BlockType.LIGHTWEIGHT_SHIFTADD.has_attention
    assert len([b for b in BlockType if b.has_attention]) == 4
