"""The block details (two-branch Q/K/V width, kernel rows) and DeepShift-PS.

Default (the original's, ``--block-details original``): ``qkv_dim`` in ``attention+X``, 16 kernel rows standalone
and 4 in ``attention+X``. ``--block-details compact`` (this project's earlier default, and what a checkpoint
without the field was trained with): ``qkv_dim / 2`` in ``attention+X``, kernel rows = the layer's heads. Shift
layers are DeepShift-Q by default; the original's DeepShift-PS (trained exponent and ternary sign) is an option.
"""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from torch.testing import assert_close

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig, extract_subnet_state
from fairseq_shiftadd.models.space_record import model_space
from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import BlockDetails, LayerConfig, SubnetConfig, get_space, largest, sample

ORIGINAL = dict(two_branch_qkv_dim=128, lightweight_kernel_heads=16, two_branch_kernel_heads=4)  # tiny: qkv 128
TOL = dict(rtol=1e-5, atol=1e-4)


def _compact(space):
    return dataclasses.replace(space, name=f"{space.name}_compact", block_details=BlockDetails.COMPACT)


def _mixer_shapes(model, layer: int, block: BlockType):
    """(q weight shape, kernel weight shape) that ``block`` reads in encoder layer ``layer`` (``sharing = none``)."""
    mixer = model.encoder.layers[layer].mixer
    q = mixer.attention.q.weight[block.value]
    kernel = mixer.lightweight.kernel.read(block.value)[0]
    return tuple(q.shape), tuple(kernel.shape)


def test_flags_set_the_space_details_and_shapes(task):
    cfg = SupernetConfig(space="tiny", sharing="none", block_details="compact", **ORIGINAL)
    model = ShiftAddSupernet.build_model(cfg, task)
    assert model.space == dataclasses.replace(model_space(SupernetConfig(space="tiny", block_details="compact")),
                                              **ORIGINAL)
    # supernet: two-branch q is (128 qkv, 64 = half of 128), kernels allocated at 16 rows (the most any user needs)
    assert _mixer_shapes(model, 0, BlockType.ATTENTION_LIGHTWEIGHT_CONV) == ((128, 64), (16, 3))
    default = ShiftAddSupernet.build_model(SupernetConfig(space="tiny", sharing="none"), task)
    assert default.space.block_details is BlockDetails.ORIGINAL
    assert _mixer_shapes(default, 0, BlockType.ATTENTION_LIGHTWEIGHT_CONV) == ((128, 64), (16, 3))
    compact = ShiftAddSupernet.build_model(SupernetConfig(space="tiny", sharing="none", block_details="compact"), task)
    assert _mixer_shapes(compact, 0, BlockType.ATTENTION_LIGHTWEIGHT_CONV) == ((64, 64), (4, 3))


def _sub(encoder_blocks, heads=2, dim=128):
    encoder = tuple(LayerConfig(b, 256, heads, OpKind.MULT) for b in encoder_blocks)
    decoder = (LayerConfig(BlockType.ATTENTION_LIGHTWEIGHT_ADD, 256, heads, OpKind.MULT, cross_heads=2,
                           enc_dec_span=-1),)
    return SubnetConfig(encoder_embed_dim=dim, decoder_embed_dim=dim, encoder=encoder, decoder=decoder)


def test_standalone_kernel_rows_and_qkv_follow_the_details(builders, task):
    space = builders.tiny
    sub = _sub((BlockType.LIGHTWEIGHT_CONV, BlockType.ATTENTION_LIGHTWEIGHT_SHIFTADD))
    state = builders.standalone(task, space, sub).state_dict()
    assert state["encoder.layers.0.mixer.lightweight.kernel.weight.lightweight_conv"].shape == (16, 3)
    user = "attention+lightweight_shiftadd"
    assert state[f"encoder.layers.1.mixer.lightweight.kernel.weight.{user}"].shape == (4, 7)
    assert state[f"encoder.layers.1.mixer.attention.q.weight.{user}"].shape == (128, 64)
    compact = builders.standalone(task, _compact(builders.tiny), sub).state_dict()
    assert compact["encoder.layers.0.mixer.lightweight.kernel.weight.lightweight_conv"].shape == (2, 3)
    assert compact[f"encoder.layers.1.mixer.attention.q.weight.{user}"].shape == (64, 64)


@pytest.mark.parametrize("sharing", ["none", "heterogeneous"])
def test_supernet_equals_standalone_with_the_compact_details(builders, task, sharing):
    space = _compact(builders.spans)
    supernet = builders.supernet(task, space, sharing, seed=1)
    subs = builders.covering_subnets(space, 4, seed=2) + [sample(space, random.Random(3))]
    for i, sub in enumerate(subs):
        supernet.set_subnet(sub)
        standalone = builders.standalone(task, space, sub, supernet)
        batch = builders.token_batch(task, seed=i)
        assert_close(standalone(*batch)[0], supernet(*batch)[0], **TOL)


@pytest.mark.parametrize("block", [b for b in BlockType if b.has_attention and b.lightweight_part],
                         ids=lambda b: b.value)
def test_incremental_equals_full_with_the_compact_details(builders, task, block):
    space = _compact(builders.tiny)
    sub = dataclasses.replace(
        _sub((BlockType.LIGHTWEIGHT_ADD, BlockType.ATTENTION)),
        decoder=(LayerConfig(block, 256, 4, OpKind.MULT, cross_heads=2, enc_dec_span=-1),) * 2,
    )
    model = builders.supernet(task, space, "heterogeneous", seed=5)
    model.set_subnet(sub)
    src, lengths, prev = builders.token_batch(task, seed=7)
    prev = prev.masked_fill(prev.eq(task.target_dictionary.pad()), task.target_dictionary.eos())
    with torch.no_grad():
        encoder_out = model.encoder(src, lengths)
        full = model.decoder(prev, encoder_out)[0]
        state: dict = {}
        steps = [model.decoder(prev[:, : t + 1], encoder_out, incremental_state=state)[0] for t in range(prev.size(1))]
    assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_details_the_widths_do_not_allow_are_refused(task):
    with pytest.raises(ValueError,
                       match=r"lightweight_kernel_heads=3 does not divide the 128 channels of .lightweight_conv."):
        ShiftAddSupernet.build_model(SupernetConfig(space="tiny", lightweight_kernel_heads=3), task)
    with pytest.raises(ValueError, match=r"two_branch_qkv_dim=6\) not divisible by encoder_heads value 4"):
        ShiftAddSupernet.build_model(SupernetConfig(space="tiny", two_branch_qkv_dim=6), task)


@pytest.mark.parametrize("details", list(BlockDetails), ids=lambda d: d.value)
def test_cost_model_counts_what_the_model_computes(task, details):
    """Parameters of the cost model equal the standalone model's under either preset."""
    space = dataclasses.replace(get_space("tiny"), block_details=details)
    workload = Workload(vocab_size=len(task.source_dictionary))
    rng = random.Random(0)
    for _ in range(4):
        sub = sample(space, rng)
        model = ShiftAddTransformer.from_subnet(SubnetModelConfig(space="tiny"), task, space, sub)
        assert CostModel(space, workload=workload).metrics(sub)["params"] == sum(p.numel() for p in model.parameters())


def test_the_original_wider_qkv_costs_more_energy(task):
    original = get_space("tiny")
    workload = Workload(vocab_size=len(task.source_dictionary))
    sub = _sub((BlockType.ATTENTION_LIGHTWEIGHT_CONV,) * 2)
    energy = {s.name: CostModel(s, workload=workload).metrics(sub)["energy_mj"] for s in (original, _compact(original))}
    assert energy[original.name] > energy[_compact(original).name]


# ---------------------------------------------------------------------------------------------- DeepShift-PS


def _ps_standalone(task, space, sub, supernet):
    model = ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name, shift_weights="ps"), task, space, sub)
    model.load_state_dict(extract_subnet_state(supernet, sub))
    return model.eval()


def test_ps_shift_weights_are_trained_exponents_and_ternary_signs(builders, task):
    space = builders.spans
    supernet = builders.supernet(task, space, "none", seed=1, shift_weights="ps")
    ffn = supernet.encoder.layers[0].ffn.fc1
    names = {n for n, _ in ffn.named_parameters()}
    assert {"ps_weight.shift.exponent", "ps_weight.shift.sign"} <= names and "weight.shift" not in names
    weight = ffn.read("shift")[0]
    nonzero = weight[weight != 0]
    assert torch.equal(nonzero.abs().log2(), nonzero.abs().log2().round())  # signed powers of two, or 0
    ffn.ps_weight["shift"].sign.data[0, 0] = 0.2  # rounds to a zero sign: DeepShift-PS weights may be 0
    assert ffn.read("shift")[0][0, 0] == 0


def test_ps_supernet_equals_standalone(builders, task):
    space = builders.spans
    supernet = builders.supernet(task, space, "none", seed=1, shift_weights="ps")
    for i, sub in enumerate(builders.covering_subnets(space, 4, seed=2)):
        supernet.set_subnet(sub)
        batch = builders.token_batch(task, seed=i)
        assert_close(_ps_standalone(task, space, sub, supernet)(*batch)[0], supernet(*batch)[0], **TOL)


def test_ps_gradients_reach_exponent_and_sign(builders, task):
    space = builders.tiny
    supernet = builders.supernet(task, space, "none", seed=1, shift_weights="ps").train()
    sub = largest(space, ffn_op=OpKind.SHIFT)
    supernet.set_subnet(sub)
    supernet(*builders.token_batch(task, seed=0))[0].square().mean().backward()
    slot = supernet.encoder.layers[0].ffn.fc1.ps_weight["shift"]
    assert slot.exponent.grad.abs().sum() > 0 and slot.sign.grad.abs().sum() > 0


def test_ps_needs_no_sharing(task):
    with pytest.raises(ValueError, match="--shift-weights ps needs --sharing none"):
        ShiftAddSupernet.build_model(SupernetConfig(space="tiny", sharing="heterogeneous", shift_weights="ps"), task)
