"""Sub-spaces of a search space (fairseq_shiftadd.space.restrict, the search's --restrict)."""
from __future__ import annotations

import random

import pytest

from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import RESTRICTABLE, check, get_space, parse_restriction, restrict, sample

DEMO = get_space("demo")


def test_parse_restriction_expands_side_shorthands():
    assert parse_restriction(["blocks=attention", "ffn_ops=mult, shift", "encoder_layers=2"]) == {
        "encoder_blocks": ("attention",), "decoder_blocks": ("attention",), "ffn_ops": ("mult", "shift"),
        "encoder_layers": ("2",),
    }


@pytest.mark.parametrize("items, message", [
    (["blocks"], "expected FIELD=VALUE"),
    (["blocks="], "expected FIELD=VALUE"),
    (["colour=red"], "'colour': not a gene field; allowed: encoder_embed_dims"),
    (["qkv_dim=64"], "'qkv_dim': not a gene field"),
    (["blocks=attention", "decoder_blocks=attention"], "decoder_blocks restricted twice"),
])
def test_parse_restriction_errors(items, message):
    with pytest.raises(ValueError, match=message):
        parse_restriction(items)


def test_hat_subspace_of_demo():
    """HAT's space inside the demo's: attention blocks and mult FFNs; widths and depths kept."""
    hat = restrict(DEMO, parse_restriction(["blocks=attention", "ffn_ops=mult"]))
    assert hat.name == "demo|encoder_blocks=attention|decoder_blocks=attention|ffn_ops=mult"
    assert hat.encoder_blocks == hat.decoder_blocks == (BlockType.ATTENTION,) and hat.ffn_ops == (OpKind.MULT,)
    for field in set(RESTRICTABLE) - {"encoder_blocks", "decoder_blocks", "ffn_ops"}:
        assert getattr(hat, field) == getattr(DEMO, field), field
    rng = random.Random(0)
    for _ in range(30):
        sub = sample(hat, rng)
        check(DEMO, sub)  # a subnet of the sub-space is one of the supernet's space
        assert all(layer.block is BlockType.ATTENTION and layer.ffn_op is OpKind.MULT
                   for layer in sub.encoder + sub.decoder)


def test_restrict_typed_values_ints_and_order():
    narrow = restrict(DEMO, {"encoder_ffn_dims": ("256",), "decoder_layers": (1,), "ffn_ops": (OpKind.SHIFT, "add")})
    assert narrow.encoder_ffn_dims == (256,) and narrow.decoder_layers == (1,)
    assert narrow.ffn_ops == (OpKind.SHIFT, OpKind.ADD)
    assert restrict(DEMO, {}) == DEMO


@pytest.mark.parametrize("choices, message", [
    ({"encoder_ffn_dims": ("300",)}, r"encoder_ffn_dims='300' not in space 'demo''s allowed values \(512, 256\)"),
    ({"ffn_ops": ("divide",)}, "ffn_ops='divide' not in space 'demo'"),
    ({"blocks": ("attention",)}, "'blocks': not a gene field"),
])
def test_restrict_rejects_values_outside_the_space(choices, message):
    with pytest.raises(ValueError, match=message):
        restrict(DEMO, choices)
