"""Supernet after ``set_subnet(c)`` == standalone ``ShiftAddTransformer(c)`` loaded with ``extract_subnet_state``."""
from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from torch.testing import assert_close

from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig
from fairseq_shiftadd.ops.hetero import SharingMode
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import sample, smallest

TOL = dict(rtol=1e-5, atol=1e-4)  # float32 through up to 5 post-norm layers, logits of magnitude ~10


def _logits(model, batch):
    src, lengths, prev = batch
    return model(src, lengths, prev)[0]


def test_covering_subnets_cover_every_block_and_op(builders):
    subs = builders.covering_subnets(builders.spans, 4)
    enc = {layer.block for s in subs for layer in s.encoder}
    dec = {layer.block for s in subs for layer in s.decoder}
    ops = {layer.ffn_op for s in subs for layer in s.encoder + s.decoder}
    spans = {layer.enc_dec_span for s in subs for layer in s.decoder}
    assert enc == set(BlockType) and dec == {b for b in BlockType if b.has_attention}
    assert ops == set(OpKind) and spans == {-1, 1, 2}


@pytest.mark.parametrize("sharing", [m.value for m in SharingMode])
def test_supernet_equals_standalone(builders, task, sharing):
    space = builders.spans
    supernet = builders.supernet(task, space, sharing, seed=1)
    subs = builders.covering_subnets(space, 4, seed=2) + [sample(space, random.Random(3)), smallest(space)]
    for i, sub in enumerate(subs):
        supernet.set_subnet(sub)
        standalone = builders.standalone(task, space, sub, supernet)
        batch = builders.token_batch(task, seed=i)
        assert_close(_logits(standalone, batch), _logits(supernet, batch), **TOL)


def test_heterogeneous_export_uses_remapped_weights(builders, task):
    """With non-identity remaps the add / shift weights of the standalone are T(w), not w."""
    space = builders.tiny
    supernet = builders.supernet(task, space, "heterogeneous", seed=4)
    sub = smallest(space)
    sub = dataclasses.replace(sub, encoder=tuple(dataclasses.replace(layer, ffn_op=OpKind.ADD)
                                                 for layer in sub.encoder))
    supernet.set_subnet(sub)
    state = builders.standalone(task, space, sub, supernet).state_dict()
    slot = supernet.encoder.layers[0].ffn.fc1
    stored = slot.weight["shared"][: sub.encoder[0].ffn_dim, : sub.encoder_embed_dim]
    exported = state["encoder.layers.0.ffn.fc1.weight.add"]
    assert not torch.allclose(exported, stored)
    assert_close(exported, slot.read("add")[0][: sub.encoder[0].ffn_dim, : sub.encoder_embed_dim])


def test_standalone_holds_only_its_candidates(builders, task):
    space = builders.tiny
    sub = builders.covering_subnets(space, 1)[0]
    names = builders.standalone(task, space, sub).state_dict().keys()
    layer = sub.encoder[0]
    prefix = "encoder.layers.0."
    assert {n.split(".")[-1] for n in names if n.startswith(prefix + "ffn.fc1.")} == {layer.ffn_op.value}
    users = {n.split(".")[-1] for n in names if n.startswith(prefix + "mixer.") and n.split(".")[-2] == "weight"}
    assert users == {layer.block.value}
    assert not any(".remap." in n for n in names)


def test_standalone_config_is_self_contained(builders, task, tmp_path):
    sub = builders.covering_subnets(builders.tiny, 1)[0]
    path = tmp_path / "sub.json"
    sub.save(path)
    cfg = SubnetModelConfig(space="tiny", subnet=str(path))
    model = ShiftAddTransformer.build_model(cfg, task)
    assert json.loads(cfg.subnet) == sub.to_dict() and model.subnet == sub


def test_set_subnet_outside_space_names_the_field(builders, task):
    space = builders.tiny
    supernet = builders.supernet(task, space, "shared")
    sub = smallest(space)
    bad_layer = dataclasses.replace(sub.decoder[0], ffn_dim=999)
    with pytest.raises(ValueError, match=r"decoder\[0\]\.ffn_dim"):
        supernet.set_subnet(dataclasses.replace(sub, decoder=(bad_layer,)))
    with pytest.raises(ValueError, match="encoder_embed_dim"):
        supernet.set_subnet(dataclasses.replace(sub, encoder_embed_dim=96))
    attention_only = builders.supernet(
        task, dataclasses.replace(space, name="attention_only", encoder_blocks=(BlockType.ATTENTION,)), "none"
    )
    light = dataclasses.replace(sub.encoder[0], block=BlockType.LIGHTWEIGHT_ADD)
    with pytest.raises(ValueError, match=r"encoder\[0\]\.block"):
        attention_only.set_subnet(dataclasses.replace(sub, encoder=(light,) * 2))
