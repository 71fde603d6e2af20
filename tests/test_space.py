"""Tests of the search space (fairseq_shiftadd.space): configs, serialisation, genetic operators, features."""
import dataclasses
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import fairseq_shiftadd
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import (
    BLOCK_DETAILS,
    SPACES,
    BlockDetails,
    LayerConfig,
    SearchSpace,
    SubnetConfig,
    attended_encoder_layers,
    check,
    crossover,
    get_space,
    largest,
    mutate,
    predictor_features,
    sample,
    sample_operators,
    smallest,
    subnet_seed,
)

SPACE_NAMES = sorted(SPACES)
TINY = SPACES["tiny"]
WMT = SPACES["wmt14_en_de"]
HAT = SPACES["hat_wmt14"]
NUMERIC_FEATURES = 11  # 2 embed dims, 2 depths, 2 encoder means, 3 decoder means, 2 span stats


def samples(space, n=20, seed=0):
    rng = random.Random(seed)
    return [sample(space, rng) for _ in range(n)]


def with_layer(sub, side, i, **changes):
    """``sub`` with layer ``i`` of ``side`` changed."""
    layers = list(getattr(sub, side))
    layers[i] = dataclasses.replace(layers[i], **changes)
    return dataclasses.replace(sub, **{side: tuple(layers)})


def genes(sub):
    """Every gene of ``sub``, keyed by its field path."""
    out = {"encoder_embed_dim": sub.encoder_embed_dim, "decoder_embed_dim": sub.decoder_embed_dim}
    for side in ("encoder", "decoder"):
        layers = getattr(sub, side)
        out[f"len({side})"] = len(layers)
        for i, layer in enumerate(layers):
            out.update({f"{side}[{i}].{k}": v for k, v in dataclasses.asdict(layer).items()})
    return out


def raises(message):
    """``pytest.raises(ValueError)`` whose message contains ``message`` literally."""
    return pytest.raises(ValueError, match=re.escape(message))


# ---------------------------------------------------------------------------------------------- spaces


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_shipped_space_rules(name):
    space = get_space(name)
    assert space.name == name
    for heads in space.encoder_heads + space.decoder_self_heads + space.decoder_cross_heads:
        assert space.qkv_dim % heads == 0
    for side, all_heads in (("encoder", space.encoder_heads), ("decoder", space.decoder_self_heads)):
        for dim in getattr(space, f"{side}_embed_dims"):
            assert dim % 2 == 0 and all((dim // 2) % heads == 0 for heads in all_heads)
    assert all(b.has_attention for b in space.decoder_blocks)
    assert set(space.enc_dec_spans) <= {-1, 1, 2}
    assert max(attended_encoder_layers(s) for s in space.enc_dec_spans) <= min(space.encoder_layers)
    if any(b.lightweight_part for b in space.encoder_blocks + space.decoder_blocks):
        assert len(space.kernel_sizes) >= max(space.max_encoder_layers, space.max_decoder_layers)
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_paper_spaces():
    assert WMT.encoder_embed_dims == WMT.decoder_embed_dims == (1024, 768, 512)
    assert WMT.encoder_ffn_dims == WMT.decoder_ffn_dims == (4096, 3072, 2048, 1024)
    assert WMT.encoder_heads == WMT.decoder_self_heads == WMT.decoder_cross_heads == (16, 8, 4)
    assert (WMT.encoder_layers, WMT.decoder_layers) == ((6,), (1, 2, 3, 4, 5, 6))
    assert WMT.enc_dec_spans == (-1, 1, 2)
    assert WMT.encoder_blocks == tuple(BlockType) and len(WMT.decoder_blocks) == 4
    assert WMT.ffn_ops == (OpKind.MULT, OpKind.SHIFT, OpKind.ADD)
    assert (WMT.kernel_sizes, WMT.qkv_dim) == ((3, 7, 15, 31, 31, 31), 512)
    fr = SPACES["wmt14_en_fr"]
    assert fr.decoder_ffn_dims == (3072, 2048, 1024)
    assert dataclasses.replace(fr, name=WMT.name, decoder_ffn_dims=WMT.decoder_ffn_dims) == WMT
    assert HAT.encoder_blocks == HAT.decoder_blocks == (BlockType.ATTENTION,) and HAT.ffn_ops == (OpKind.MULT,)
    assert (HAT.encoder_embed_dims, HAT.encoder_heads, HAT.decoder_cross_heads) == ((640, 512), (8, 4), (8, 4))
    assert HAT.encoder_ffn_dims == HAT.decoder_ffn_dims == (3072, 2048, 1024)
    assert (WMT.max_encoder_embed_dim, WMT.max_decoder_embed_dim, WMT.max_encoder_ffn_dim) == (1024, 1024, 4096)
    assert (fr.max_decoder_ffn_dim, WMT.max_encoder_heads, WMT.max_decoder_self_heads) == (3072, 16, 16)
    assert (HAT.max_decoder_cross_heads, TINY.max_encoder_layers, TINY.max_decoder_layers) == (8, 2, 2)


def test_get_space_unknown_lists_names():
    with raises("space name='wmt16' not in allowed values ("):
        get_space("wmt16")
    with pytest.raises(ValueError) as info:
        get_space("wmt16")
    assert all(repr(name) in str(info.value) for name in SPACES)


def test_attended_encoder_layers():
    assert [attended_encoder_layers(s) for s in (-1, 1, 2)] == [1, 2, 3]
    with raises("enc_dec_span=0 not in allowed values (-1, 1, 2)"):
        attended_encoder_layers(0)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(name=""), "name must be non-empty"),
        (dict(encoder_ffn_dims=()), "encoder_ffn_dims must be non-empty"),
        (dict(ffn_ops=()), "ffn_ops must be non-empty"),
        (dict(decoder_layers=(1, 1)), "decoder_layers=(1, 1) has duplicates"),
        (dict(encoder_ffn_dims=(512, 0)), "encoder_ffn_dims=(512, 0) must be positive"),
        (dict(decoder_layers=(0, 1)), "decoder_layers=(0, 1) must be positive"),
        (dict(decoder_cross_heads=(-2,)), "decoder_cross_heads=(-2) must be positive"),
        (dict(qkv_dim=0), "qkv_dim=0 must be positive"),
        (dict(qkv_dim=36, block_details=BlockDetails.COMPACT),
         "Q/K/V width 18 of two-branch encoder blocks (qkv_dim / 2 under block_details='compact') not "
         "divisible by encoder_heads value 4"),
        (dict(decoder_cross_heads=(3,)), "qkv_dim=128 not divisible by decoder_cross_heads value 3"),
        (dict(encoder_embed_dims=(128, 72)), "lightweight_kernel_heads 16 of block_details='original' does not "
                                             "divide the 72 channels of 'lightweight_conv' at encoder_embed_dims"),
        (dict(encoder_embed_dims=(128, 66)), "encoder_embed_dims value 66 must be even with half divisible"),
        (dict(decoder_embed_dims=(127,)), "decoder_embed_dims value 127 must be even"),
        (dict(decoder_blocks=(BlockType.ATTENTION, BlockType.LIGHTWEIGHT_ADD)), "decoder_blocks must contain"),
        (dict(enc_dec_spans=(-1, 0)), "enc_dec_spans value 0 not in allowed values (-1, 1, 2)"),
        (dict(enc_dec_spans=(-1, 2)), "enc_dec_spans value 2 attends to 3 encoder layers"),
        (dict(kernel_sizes=(3,)), "kernel_sizes=(3) needs one size per layer (2)"),
        (dict(kernel_sizes=(3, 4)), "kernel_sizes=(3, 4) must be odd"),
        (dict(kernel_sizes=(3, -1)), "kernel_sizes=(3, -1) must be positive"),
        (dict(encoder_heads=[4, 2]), "SearchSpace.encoder_heads=[4, 2] must be a tuple"),
        (dict(ffn_ops=("mult",)), "SearchSpace.ffn_ops[0]='mult' must be a OpKind"),
        (dict(qkv_dim=128.0), "SearchSpace.qkv_dim=128.0 must be an int"),
    ],
)
def test_space_validation(changes, message):
    with raises(message):
        dataclasses.replace(TINY, **changes)


def test_space_without_lightweight_blocks():
    """Without lightweight blocks a space needs no kernel sizes, and without two-branch blocks no 2 * heads rule
    under the compact block details (qkv_dim 4 with 4 heads: one channel per head); adding either kind of block
    brings its rule back (the original details give the branch the full qkv_dim, so they accept it)."""
    attention = (BlockType.ATTENTION,)
    space = dataclasses.replace(TINY, encoder_blocks=attention, decoder_blocks=attention, kernel_sizes=(), qkv_dim=4)
    for sub in samples(space, 10) + [largest(space), smallest(space)]:
        check(space, sub)
        assert {layer.block for layer in sub.encoder + sub.decoder} == {BlockType.ATTENTION}
    with pytest.raises(ValueError, match=r"kernel_sizes=\(\) needs one size per layer \(2\)"):
        dataclasses.replace(space, encoder_blocks=attention + (BlockType.LIGHTWEIGHT_CONV,))
    two_branch = attention + (BlockType.ATTENTION_LIGHTWEIGHT_CONV,)
    dataclasses.replace(space, encoder_blocks=two_branch, kernel_sizes=(3, 5))  # original: Q/K/V width 4
    with pytest.raises(ValueError, match=r"Q/K/V width 2 of two-branch encoder blocks \(qkv_dim / 2 under "
                                         r"block_details='compact'\) not divisible by encoder_heads value 4"):
        dataclasses.replace(space, encoder_blocks=two_branch, kernel_sizes=(3, 5), block_details=BlockDetails.COMPACT)


# ---------------------------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_round_trips(name, tmp_path):
    space = SPACES[name]
    for i, sub in enumerate(samples(space, 15) + [largest(space), smallest(space)]):
        assert SubnetConfig.from_dict(sub.to_dict()) == sub
        assert SubnetConfig.from_dict(json.loads(json.dumps(sub.to_dict()))) == sub
        assert SubnetConfig.from_json(sub.to_json()) == sub
        assert SubnetConfig.from_yaml(sub.to_yaml()) == sub
        for suffix in (".json", ".yaml", ".yml"):
            sub.save(tmp_path / f"sub{i}{suffix}")
            assert SubnetConfig.load(tmp_path / f"sub{i}{suffix}") == sub
    for suffix in (".json", ".yaml"):
        space.save(tmp_path / f"space{suffix}")
        assert SearchSpace.load(tmp_path / f"space{suffix}") == space
    assert SearchSpace.from_json(space.to_json()) == SearchSpace.from_yaml(space.to_yaml()) == space


def test_plain_form():
    enc = LayerConfig(BlockType.ATTENTION_LIGHTWEIGHT_ADD, 256, 2, OpKind.SHIFT)
    dec = LayerConfig(BlockType.ATTENTION, 512, 4, OpKind.ADD, cross_heads=2, enc_dec_span=1)
    sub = SubnetConfig(128, 64, (enc, enc), (dec,))
    enc_plain = {"block": "attention+lightweight_add", "ffn_dim": 256, "num_heads": 2, "ffn_op": "shift"}
    dec_plain = {"block": "attention", "ffn_dim": 512, "num_heads": 4, "ffn_op": "add"}
    dec_plain.update(cross_heads=2, enc_dec_span=1)
    expected = {"encoder_embed_dim": 128, "decoder_embed_dim": 64, "encoder": [enc_plain] * 2, "decoder": [dec_plain]}
    assert sub.to_dict() == expected  # encoder layers leave out their None fields
    assert json.loads(sub.to_json()) == expected
    assert LayerConfig.from_dict({"block": "attention", "ffn_dim": 8, "num_heads": 2}).ffn_op is OpKind.MULT
    assert TINY.to_dict()["ffn_ops"] == ["mult", "shift", "add"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("encoder_embed_dim"), "encoder_embed_dim: missing key"),
        (lambda d: d["decoder"][1].pop("block"), "decoder[1].block: missing key"),
        (lambda d: d.update(dropout=0.3), "dropout: unknown key"),
        (lambda d: d["encoder"][0].update(kernel_size=3), "encoder[0].kernel_size: unknown key"),
        (lambda d: d.update(decoder_embed_dim="128"), "decoder_embed_dim='128' must be an int"),
        (lambda d: d.update(decoder_embed_dim=128.0), "decoder_embed_dim=128.0 must be an int"),
        (lambda d: d["encoder"][1].update(num_heads=True), "encoder[1].num_heads=True must be an int"),
        (lambda d: d["decoder"][0].update(cross_heads="4"), "decoder[0].cross_heads='4' must be an int"),
        (lambda d: d.update(encoder="attention"), "encoder='attention' must be a list"),
        (lambda d: d["decoder"].__setitem__(0, [1, 2]), "decoder[0]=[1, 2] must be a mapping"),
        (lambda d: d["decoder"][1].update(block=3), "decoder[1].block=3 must be a BlockType"),
        (lambda d: d["encoder"][0].update(ffn_op="mul"), "encoder[0].ffn_op='mul' not in allowed values"),
        (
            lambda d: d["encoder"][1].update(ffn_op="MULT"),
            "encoder[1].ffn_op='MULT' not in allowed values ('mult', 'shift', 'add')",
        ),
    ],
)
def test_from_dict_errors(edit, message):
    data = largest(TINY).to_dict()
    edit(data)
    with raises("SubnetConfig.from_dict: " + message):
        SubnetConfig.from_dict(data)


def test_unknown_block_lists_allowed_values():
    data = largest(TINY).to_dict()
    data["decoder"][1]["block"] = "transformer"
    allowed = ", ".join(repr(b.value) for b in BlockType)
    with raises(f"decoder[1].block='transformer' not in allowed values ({allowed})"):
        SubnetConfig.from_dict(data)


def test_parse_errors():
    with raises("SubnetConfig.from_dict: expected a mapping, got list"):
        SubnetConfig.from_json("[1, 2]")
    with pytest.raises(ValueError):  # json.JSONDecodeError is a ValueError
        SubnetConfig.from_json("{")
    with raises("SubnetConfig.from_yaml: invalid YAML"):
        SubnetConfig.from_yaml("a: [")
    with raises("suffix must be .json, .yaml or .yml"):
        largest(TINY).save("sub.txt")
    with raises("SearchSpace.from_dict: encoder_heads[1]='2' must be an int"):
        SearchSpace.from_dict({**TINY.to_dict(), "encoder_heads": [4, "2"]})
    with raises("SearchSpace 'tiny': qkv_dim=100 not divisible by encoder_heads value 8"):
        SearchSpace.from_dict({**TINY.to_dict(), "encoder_heads": [8], "qkv_dim": 100})


def test_constructor_checks_types():
    layer = LayerConfig(BlockType.ATTENTION, 256, 2)
    with raises("LayerConfig.block='attention' must be a BlockType"):
        LayerConfig("attention", 256, 2)
    with raises("LayerConfig.cross_heads=2.0 must be an int"):
        LayerConfig(BlockType.ATTENTION, 256, 2, cross_heads=2.0)
    with raises("SubnetConfig.encoder=[LayerConfig("):
        SubnetConfig(128, 128, [layer, layer], (layer,))
    with raises("SubnetConfig.decoder[0]={'block': 'attention'} must be a LayerConfig"):
        SubnetConfig(128, 128, (layer, layer), ({"block": "attention"},))


def test_hashing_and_equality():
    subs = samples(TINY, 50)
    copies = [SubnetConfig.from_json(s.to_json()) for s in subs]
    assert copies == subs and [hash(c) for c in copies] == [hash(s) for s in subs]
    fitness = {sub: sub.encoder_embed_dim + len(sub.decoder) for sub in subs}
    assert all(fitness[c] == c.encoder_embed_dim + len(c.decoder) for c in copies)
    assert len(set(subs + copies)) == len(set(subs))
    assert largest(TINY) != smallest(TINY)
    assert len({WMT, SPACES["wmt14_en_fr"], dataclasses.replace(WMT)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        subs[0].encoder_embed_dim = 1


# ---------------------------------------------------------------------------------------------- check


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(encoder_embed_dim=96), "encoder_embed_dim=96 not in allowed values (128, 64)"),
        (dict(decoder_embed_dim=256), "decoder_embed_dim=256 not in allowed values (128, 64)"),
        (dict(encoder=largest(TINY).encoder[:1]), "len(encoder)=1 not in allowed values (2)"),
        (dict(decoder=largest(TINY).decoder * 2), "len(decoder)=4 not in allowed values (1, 2)"),
    ],
)
def test_check_rejects_model_genes(changes, message):
    with raises(message):
        check(TINY, dataclasses.replace(largest(TINY), **changes))


@pytest.mark.parametrize(
    "side, i, changes, message",
    [
        ("encoder", 1, dict(ffn_dim=1024), "encoder[1].ffn_dim=1024 not in allowed values (512, 256)"),
        ("decoder", 1, dict(ffn_dim=5000), "decoder[1].ffn_dim=5000 not in allowed values (512, 256)"),
        ("encoder", 0, dict(num_heads=8), "encoder[0].num_heads=8 not in allowed values (4, 2)"),
        ("decoder", 0, dict(num_heads=1), "decoder[0].num_heads=1 not in allowed values (4, 2)"),
        ("decoder", 1, dict(cross_heads=8), "decoder[1].cross_heads=8 not in allowed values (4, 2)"),
        ("decoder", 1, dict(cross_heads=None), "decoder[1].cross_heads=None not in allowed values (4, 2)"),
        ("decoder", 0, dict(enc_dec_span=2), "decoder[0].enc_dec_span=2 not in allowed values (-1, 1)"),
        ("encoder", 0, dict(cross_heads=4), "encoder[0].cross_heads=4 must be None in the encoder"),
        ("encoder", 1, dict(enc_dec_span=-1), "encoder[1].enc_dec_span=-1 must be None in the encoder"),
        (
            "decoder",
            1,
            dict(block=BlockType.LIGHTWEIGHT_CONV),
            "decoder[1].block='lightweight_conv' not in allowed values ('attention', 'attention+lightweight_conv', "
            "'attention+lightweight_add', 'attention+lightweight_shiftadd')",
        ),
    ],
)
def test_check_rejects_layer_genes(side, i, changes, message):
    sub = largest(TINY)
    check(TINY, sub)
    with raises(message):
        check(TINY, with_layer(sub, side, i, **changes))


def test_check_against_other_spaces():
    with raises("encoder[3].ffn_op='shift' not in allowed values ('mult')"):
        check(HAT, with_layer(largest(HAT), "encoder", 3, ffn_op=OpKind.SHIFT))
    with raises("encoder[0].block='lightweight_conv' not in allowed values ('attention')"):
        check(HAT, with_layer(largest(HAT), "encoder", 0, block=BlockType.LIGHTWEIGHT_CONV))
    with raises("decoder[0].ffn_dim=4096 not in allowed values (3072, 2048, 1024)"):
        check(SPACES["wmt14_en_fr"], largest(WMT))
    with raises("must be a SubnetConfig"):
        check(TINY, largest(TINY).to_dict())


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sample_valid_and_deterministic(name):
    space = SPACES[name]
    subs = samples(space, 30, seed=7)
    for sub in subs:
        check(space, sub)
    assert samples(space, 30, seed=7) == subs
    assert samples(space, 30, seed=8) != subs


def test_sample_covers_every_choice():
    subs = samples(WMT, 400)
    enc = [layer for s in subs for layer in s.encoder]
    dec = [layer for s in subs for layer in s.decoder]
    assert {layer.block for layer in enc} == set(BlockType)
    assert {layer.block for layer in dec} == set(WMT.decoder_blocks)
    assert {layer.ffn_op for layer in enc} == {layer.ffn_op for layer in dec} == set(OpKind)
    assert {len(s.decoder) for s in subs} == set(WMT.decoder_layers)
    assert {layer.enc_dec_span for layer in dec} == set(WMT.enc_dec_spans)
    assert {layer.cross_heads for layer in dec} == set(WMT.decoder_cross_heads)
    assert {s.encoder_embed_dim for s in subs} == {s.decoder_embed_dim for s in subs} == set(WMT.encoder_embed_dims)
    counts = Counter(layer.block for layer in enc)  # uniform: 2400 layers, 1/7 each
    assert all(abs(c / len(enc) - 1 / 7) < 0.04 for c in counts.values())


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_largest_and_smallest(name):
    space = SPACES[name]
    big, small = largest(space), smallest(space)
    check(space, big)
    check(space, small)
    assert (big.encoder_embed_dim, big.decoder_embed_dim) == (space.max_encoder_embed_dim, space.max_decoder_embed_dim)
    assert (len(big.encoder), len(big.decoder)) == (space.max_encoder_layers, space.max_decoder_layers)
    assert (len(small.encoder), len(small.decoder)) == (min(space.encoder_layers), min(space.decoder_layers))
    for layer in big.encoder:
        assert (layer.ffn_dim, layer.num_heads) == (space.max_encoder_ffn_dim, space.max_encoder_heads)
    for layer in big.decoder:
        assert (layer.num_heads, layer.cross_heads) == (space.max_decoder_self_heads, space.max_decoder_cross_heads)
        assert layer.enc_dec_span == max(space.enc_dec_spans)
    for layer in small.decoder:
        assert (layer.ffn_dim, layer.cross_heads, layer.enc_dec_span) == (
            min(space.decoder_ffn_dims),
            min(space.decoder_cross_heads),
            -1,
        )
    for layer in big.encoder + small.encoder + big.decoder + small.decoder:  # every shipped space has both
        assert layer.block is BlockType.ATTENTION and layer.ffn_op is OpKind.MULT


def test_largest_of_wmt14_en_de_is_transformer_big_like():
    big = largest(WMT)
    assert (big.encoder_embed_dim, big.decoder_embed_dim) == (1024, 1024)
    assert (len(big.encoder), len(big.decoder)) == (6, 6)
    assert {(l.block, l.ffn_op, l.ffn_dim, l.num_heads) for l in big.encoder + big.decoder} == {
        (BlockType.ATTENTION, OpKind.MULT, 4096, 16)
    }
    assert WMT.encoder_blocks[0] is not BlockType.ATTENTION  # the rule, not the order of the choices, decides


def test_extremes_fall_back_to_the_first_choice_without_attention_or_mult():
    space = dataclasses.replace(
        TINY, name="no_plain", encoder_blocks=(BlockType.LIGHTWEIGHT_ADD, BlockType.ATTENTION_LIGHTWEIGHT_CONV),
        decoder_blocks=(BlockType.ATTENTION_LIGHTWEIGHT_CONV,), ffn_ops=(OpKind.SHIFT, OpKind.ADD),
    )
    for sub in (largest(space), smallest(space)):
        assert {l.block for l in sub.encoder} == {BlockType.LIGHTWEIGHT_ADD}
        assert {l.block for l in sub.decoder} == {BlockType.ATTENTION_LIGHTWEIGHT_CONV}
        assert {l.ffn_op for l in sub.encoder + sub.decoder} == {OpKind.SHIFT}


def test_largest_block_choice():
    sub = largest(WMT, block=BlockType.ATTENTION_LIGHTWEIGHT_SHIFTADD, ffn_op=OpKind.ADD)
    assert {layer.block for layer in sub.encoder + sub.decoder} == {BlockType.ATTENTION_LIGHTWEIGHT_SHIFTADD}
    assert {layer.ffn_op for layer in sub.encoder + sub.decoder} == {OpKind.ADD}
    sub = smallest(WMT, block=BlockType.LIGHTWEIGHT_ADD, decoder_block=BlockType.ATTENTION)
    assert {layer.block for layer in sub.encoder} == {BlockType.LIGHTWEIGHT_ADD}
    assert {layer.block for layer in sub.decoder} == {BlockType.ATTENTION}
    with raises("block (for the decoder, unless decoder_block is given)='lightweight_add' not in allowed values"):
        largest(WMT, block=BlockType.LIGHTWEIGHT_ADD)
    with raises("decoder_block='lightweight_add' not in allowed values"):
        largest(WMT, decoder_block=BlockType.LIGHTWEIGHT_ADD)
    with raises("block='attention+lightweight_add' not in allowed values ('attention')"):
        largest(HAT, block=BlockType.ATTENTION_LIGHTWEIGHT_ADD)
    with raises("ffn_op='shift' not in allowed values ('mult')"):
        smallest(HAT, ffn_op=OpKind.SHIFT)


def test_sample_operators_redraws_operators_only():
    """The operator sandwich's subnet: each side's blocks from that side's choices, every size kept."""
    rng = random.Random(3)
    for base in (largest(WMT), smallest(WMT), samples(WMT, 1, seed=4)[0]):
        drawn = [sample_operators(WMT, base, rng) for _ in range(200)]
        for sub in drawn:
            check(WMT, sub)
            plain = dataclasses.replace(
                sub, **{side: tuple(dataclasses.replace(layer, block=old.block, ffn_op=old.ffn_op)
                                    for layer, old in zip(getattr(sub, side), getattr(base, side)))
                        for side in ("encoder", "decoder")})
            assert plain == base
        assert {layer.block for sub in drawn for layer in sub.encoder} == set(WMT.encoder_blocks)
        assert {layer.block for sub in drawn for layer in sub.decoder} == set(WMT.decoder_blocks)
        assert {layer.ffn_op for sub in drawn for layer in sub.encoder + sub.decoder} == set(WMT.ffn_ops)
    assert sample_operators(HAT, largest(HAT), rng) == largest(HAT)  # one operator per gene: nothing to draw
    with raises("not in allowed values"):
        sample_operators(HAT, largest(WMT), rng)


# ---------------------------------------------------------------------------------------------- evolution


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_mutate(name):
    space = SPACES[name]
    rng = random.Random(3)
    for sub in samples(space, 30):
        assert mutate(space, sub, rng, prob=0.0) == sub
        mutant = mutate(space, sub, rng, prob=1.0)
        check(space, mutant)
        assert mutant != sub
        check(space, mutate(space, sub, rng))
    first = samples(space, 1)[0]
    assert mutate(space, first, random.Random(5)) == mutate(space, first, random.Random(5))


def test_mutate_rate_and_depth_growth():
    rng = random.Random(11)
    sub = smallest(WMT)  # one decoder layer: a redrawn depth mostly grows
    mutants = [mutate(WMT, sub, rng, prob=0.3) for _ in range(300)]
    assert {len(m.decoder) for m in mutants} == set(WMT.decoder_layers)
    changed = [m.encoder[0].ffn_dim != sub.encoder[0].ffn_dim for m in mutants]
    assert abs(sum(changed) / len(changed) - 0.3 * 3 / 4) < 0.07  # redrawn, then one of three other values
    with raises("prob=1.5 must be in [0, 1]"):
        mutate(WMT, sub, rng, prob=1.5)
    with raises("len(decoder)=0 not in allowed values"):
        mutate(WMT, dataclasses.replace(sub, decoder=()), rng)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_crossover(name):
    space = SPACES[name]
    rng = random.Random(4)
    pool = samples(space, 40)
    for a, b in zip(pool[::2], pool[1::2]):
        child = crossover(space, a, b, rng)
        check(space, child)
        genes_a, genes_b = genes(a), genes(b)
        for path, value in genes(child).items():
            assert (path in genes_a and genes_a[path] == value) or (path in genes_b and genes_b[path] == value), path
    assert crossover(space, pool[0], pool[0], rng) == pool[0]


def test_crossover_mixes():
    a = largest(WMT)
    b = smallest(WMT, block=BlockType.LIGHTWEIGHT_ADD, decoder_block=BlockType.ATTENTION_LIGHTWEIGHT_ADD)
    children = [crossover(WMT, a, b, random.Random(i)) for i in range(50)]
    assert {len(c.decoder) for c in children} == {1, 6}
    assert any(len({layer.block for layer in c.encoder}) == 2 for c in children)
    assert any(len({layer.ffn_dim for layer in c.encoder}) == 2 for c in children)
    deep = [c for c in children if len(c.decoder) == 6]
    assert deep and all(c.decoder[1:] == a.decoder[1:] for c in deep)  # layers only ``a`` has come whole


# ---------------------------------------------------------------------------------------------- seeds, features

# Loads space.py and ops/kinds.py without the package __init__ (which imports fairseq: slow). It also
# checks that space.py needs neither fairseq nor torch.
_SEEDS_SCRIPT = """
import json, sys, types
for name in ("fairseq_shiftadd", "fairseq_shiftadd.ops"):
    package = types.ModuleType(name)
    package.__path__ = [sys.argv[1] + name[len("fairseq_shiftadd"):].replace(".", "/")]
    sys.modules[name] = package
from fairseq_shiftadd.space import subnet_seed
assert "torch" not in sys.modules and "fairseq" not in sys.modules
print(json.dumps([subnet_seed(1, 12345), subnet_seed(-3, 0)]))
"""


def _subnet_seeds_in_subprocess(hash_salt):
    package_dir = str(Path(fairseq_shiftadd.__file__).parent)
    env = {**os.environ, "PYTHONHASHSEED": hash_salt}
    run = subprocess.run([sys.executable, "-c", _SEEDS_SCRIPT, package_dir], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_subnet_seed():
    seeds = {subnet_seed(seed, u) for seed in (1, 2) for u in range(1000)}
    assert len(seeds) == 2000 and all(0 <= s < 2**63 for s in seeds)
    assert subnet_seed(1, 5) == subnet_seed(1, 5) != subnet_seed(5, 1)
    expected = [subnet_seed(1, 12345), subnet_seed(-3, 0)]
    assert [_subnet_seeds_in_subprocess(salt) for salt in ("1", "2")] == [expected, expected]
    assert sample(TINY, random.Random(subnet_seed(1, 7))) == sample(TINY, random.Random(subnet_seed(1, 7)))
    with raises("update_num='7' must be an int"):
        subnet_seed(1, "7")
    with raises("seed=True must be an int"):
        subnet_seed(True, 7)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_predictor_features(name):
    space = SPACES[name]
    subs = samples(space, 30) + [largest(space), smallest(space)]
    features = [predictor_features(space, sub) for sub in subs]
    one_hots = (len(space.encoder_blocks) + len(space.ffn_ops)) * space.max_encoder_layers + (
        len(space.decoder_blocks) + len(space.ffn_ops)
    ) * space.max_decoder_layers
    assert {len(f) for f in features} == {NUMERIC_FEATURES + one_hots}
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for f in features for v in f)
    assert features[-2][:NUMERIC_FEATURES] == [1.0] * NUMERIC_FEATURES  # largest: every numeric at its maximum
    for sub, f in zip(subs, features):  # one block and one op per present layer, zeros past the depth
        assert sum(f[NUMERIC_FEATURES:]) == 2 * (len(sub.encoder) + len(sub.decoder))
    assert len({tuple(f) for f in features}) == len(set(subs))


def test_encode_values():
    sub = largest(TINY, block=BlockType.ATTENTION_LIGHTWEIGHT_ADD, ffn_op=OpKind.SHIFT)
    sub = dataclasses.replace(sub, decoder_embed_dim=64, decoder=sub.decoder[:1])
    sub = with_layer(sub, "decoder", 0, enc_dec_span=-1, ffn_dim=256, num_heads=2, cross_heads=2)
    sub = with_layer(sub, "encoder", 1, num_heads=2)
    # embeds 128/128, 64/128; depths 2/2, 1/2; encoder ffn 512/512, heads 3/4; decoder ffn, heads, cross
    # 256/512, 2/4, 2/4; attended encoder layers mean 1/2, max 1/2
    numeric = [1.0, 0.5, 1.0, 0.5, 1.0, 0.75, 0.5, 0.5, 0.5, 0.5, 0.5]
    encoder_layer = [0, 0, 0, 0, 0, 1, 0] + [0, 1, 0]  # attention+lightweight_add, shift
    decoder_layer = [0, 0, 1, 0] + [0, 1, 0]
    assert predictor_features(TINY, sub) == numeric + encoder_layer * 2 + decoder_layer + [0] * 7


# ---------------------------------------------------------------------------------------------- block details


def test_block_detail_defaults_are_the_originals():
    two_branch = BlockType.ATTENTION_LIGHTWEIGHT_ADD
    assert WMT.block_details is BlockDetails.ORIGINAL
    assert WMT.attention_qkv_dim(BlockType.ATTENTION) == 512 and WMT.attention_qkv_dim(two_branch) == 512
    assert WMT.kernel_heads(BlockType.LIGHTWEIGHT_CONV, 8) == 16 and WMT.kernel_heads(two_branch, 8) == 4
    assert WMT.fixed_kernel_heads(BlockType.LIGHTWEIGHT_CONV) == 16 and WMT.fixed_kernel_heads(two_branch) == 4


def test_compact_block_details():
    compact = dataclasses.replace(WMT, block_details=BlockDetails.COMPACT)
    two_branch = BlockType.ATTENTION_LIGHTWEIGHT_SHIFTADD
    assert compact.attention_qkv_dim(two_branch) == 256 and compact.attention_qkv_dim(BlockType.ATTENTION) == 512
    assert compact.kernel_heads(BlockType.LIGHTWEIGHT_SHIFTADD, 8) == 8 and compact.kernel_heads(two_branch, 4) == 4
    assert compact.fixed_kernel_heads(two_branch) == 0
    assert SearchSpace.from_dict(compact.to_dict()) == compact
    assert compact.sha256() != WMT.sha256()
    assert SearchSpace.from_dict(json.loads(compact.to_json())).sha256() == compact.sha256()


def test_explicit_block_details_override_the_preset():
    explicit = dict(two_branch_qkv_dim=512, lightweight_kernel_heads=16, two_branch_kernel_heads=4)
    overridden = dataclasses.replace(WMT, block_details=BlockDetails.COMPACT, **explicit)
    two_branch = BlockType.ATTENTION_LIGHTWEIGHT_SHIFTADD
    for block, heads in ((two_branch, 16), (BlockType.LIGHTWEIGHT_SHIFTADD, 8), (BlockType.ATTENTION, 4)):
        assert overridden.attention_qkv_dim(block) == WMT.attention_qkv_dim(block)
        assert overridden.kernel_heads(block, heads) == WMT.kernel_heads(block, heads)
    assert dataclasses.replace(WMT, two_branch_kernel_heads=8).kernel_heads(two_branch, 16) == 8
    old = {k: v for k, v in WMT.to_dict().items() if k not in BLOCK_DETAILS}
    assert SearchSpace.from_dict(old) == WMT  # a space written without the fields loads with the defaults


def test_shipped_spaces_validate_under_both_presets():
    for space in SPACES.values():
        for preset in BlockDetails:
            assert dataclasses.replace(space, block_details=preset).block_details is preset


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(two_branch_qkv_dim=-1), "two_branch_qkv_dim=-1 must be 0 (the default) or positive"),
        (dict(two_branch_qkv_dim=100), "(two_branch_qkv_dim=100) not divisible by encoder_heads value 16"),
        (dict(two_branch_kernel_heads=3), "two_branch_kernel_heads=3 does not divide the 512 channels of "
                                          "'attention+lightweight_conv' at encoder_embed_dims value 1024"),
    ],
)
def test_block_details_are_validated(changes, message):
    with raises(message):
        dataclasses.replace(WMT, **changes)
