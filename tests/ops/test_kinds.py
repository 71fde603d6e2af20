"""The structural rules of the block types (ops/kinds.py), which the models and the cost model both read."""
from __future__ import annotations

import pytest

from fairseq_shiftadd.ops.kinds import BlockType as B
from fairseq_shiftadd.ops.kinds import OpKind

TWO_BRANCH = {B.ATTENTION_LIGHTWEIGHT_CONV, B.ATTENTION_LIGHTWEIGHT_ADD, B.ATTENTION_LIGHTWEIGHT_SHIFTADD}


@pytest.mark.parametrize("block", list(B), ids=lambda b: b.value)
def test_branch_width_halves_only_two_branch_blocks(block):
    assert block.is_two_branch == (block in TWO_BRANCH)
    assert block.branch_width(64) == (32 if block in TWO_BRANCH else 64)


@pytest.mark.parametrize("block", list(B), ids=lambda b: b.value)
def test_lightweight_branch_rules(block):
    name = block.value.split("+")[-1]
    assert block.has_shift == (name == "lightweight_shiftadd")
    expected_op = {"attention": None, "lightweight_conv": OpKind.MULT}.get(name, OpKind.ADD)
    assert block.mixer_op is expected_op
    assert block.kernel_size((3, 7, 15), 1) == (None if name == "attention" else 7)


def test_kernel_size_past_the_sizes_names_the_layer():
    with pytest.raises(ValueError, match=r"kernel_sizes=\(3, 7\) has no kernel size for layer 2"):
        B.LIGHTWEIGHT_ADD.kernel_size((3, 7), 2)
    assert B.ATTENTION.kernel_size((), 5) is None  # no lightweight branch: no kernel, whatever the sizes
