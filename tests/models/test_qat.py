"""Quantisation-aware training in the translation models (``--quant-bits``): per operator, supernet == export,
incremental == full, running ranges saved and restored, bad widths refused."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from fairseq_shiftadd.models.sharing import SlotUser, WeightSlot, add_weight_scale
from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig, extract_subnet_state
from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.ops.quant import QuantConfig, fake_quant_affine, fake_quant_symmetric, quantize_weight
from fairseq_shiftadd.space import sample, smallest

BITS = 8
TOL = dict(rtol=1e-5, atol=1e-4)


def _calibrated(model, batches):
    """Train-mode forwards (no update) initialise every running range the batches reach; then eval mode."""
    model.train()
    with torch.no_grad():
        for src, lengths, prev in batches:
            model(src, lengths, prev)
    return model.eval()


def _quant_supernet(builders, task, space, sharing="heterogeneous", seed=0):
    torch.manual_seed(seed)
    model = ShiftAddSupernet.from_space(
        SupernetConfig(space=space.name, sharing=sharing, quant_bits=BITS), task, space
    )
    builders.perturb_(model, seed)
    return model


def _quant_standalone(task, space, sub, supernet):
    model = ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name, quant_bits=BITS), task, space, sub)
    model.load_state_dict(extract_subnet_state(supernet, sub))
    return model.eval()


@pytest.mark.parametrize("op", list(OpKind), ids=lambda o: o.value)
def test_quantised_linear_equals_quantise_then_compute(op):
    torch.manual_seed(0)
    slot = WeightSlot({op.value: SlotUser(op, (6, 5))}, "none", quant=QuantConfig(bits=BITS))
    with torch.no_grad():
        slot.bias[op.value].normal_()
    slot.train().linear(torch.randn(7, 5) * 2, op.value, 4)  # initialises the running input range
    slot.eval()
    x = torch.randn(3, 7, 5) * 2
    y = slot.linear(x, op.value, 4)
    weight, bias = slot.read(op.value)
    weight, bias = weight[:4, :5].detach(), bias[:4].detach()
    quantiser = slot.operand_quant[op.value]
    low, high = quantiser.range.low, quantiser.range.high
    if op is OpKind.ADD:  # input and a * W on one symmetric grid
        scale = add_weight_scale(4, 5)
        max_abs = torch.stack([low.abs(), high.abs(), (weight * scale).abs().amax()]).amax()
        xq, wq = fake_quant_symmetric(x, max_abs, BITS), fake_quant_symmetric(weight * scale, max_abs, BITS)
        distance = -(xq[..., None, :] - wq).abs().sum(-1)
        expected = (distance - distance.mean(-1, keepdim=True)) / scale + bias
    else:  # affine input; mult: per-channel symmetric weight; shift: the powers of two as they are
        wq = quantize_weight(weight, QuantConfig(bits=BITS)) if op is OpKind.MULT else weight
        expected = F.linear(fake_quant_affine(x, low, high, BITS), wq, bias)
    assert_close(y, expected, rtol=1e-5, atol=1e-5)
    float_slot = WeightSlot({op.value: SlotUser(op, (6, 5))}, "none")
    float_slot.load_state_dict({k: v for k, v in slot.state_dict().items() if "operand_quant" not in k})
    assert not torch.allclose(float_slot.linear(x, op.value, 4), y, atol=1e-4)  # the quantisation acts


@pytest.mark.parametrize("sharing", ["none", "heterogeneous"])
def test_quantised_supernet_equals_exported_subnet(builders, task, sharing):
    space = builders.spans
    supernet = _quant_supernet(builders, task, space, sharing, seed=1)
    subs = builders.covering_subnets(space, 4, seed=2) + [sample(space, random.Random(3)), smallest(space)]
    for i, sub in enumerate(subs):
        supernet.set_subnet(sub)
        batch = builders.token_batch(task, seed=i)
        _calibrated(supernet, [batch])
        standalone = _quant_standalone(task, space, sub, supernet)
        assert_close(standalone(*batch)[0], supernet(*batch)[0], **TOL)


def test_quantised_incremental_decoding_equals_full(builders, task):
    space = builders.spans
    supernet = _quant_supernet(builders, task, space, seed=5)
    for sub in builders.covering_subnets(space, 2, seed=6):
        supernet.set_subnet(sub)
        src, lengths, prev = builders.token_batch(task, seed=7)
        prev = prev.masked_fill(prev.eq(task.target_dictionary.pad()), task.target_dictionary.eos())
        _calibrated(supernet, [(src, lengths, prev)])
        with torch.no_grad():
            encoder_out = supernet.encoder(src, lengths)
            full = supernet.decoder(prev, encoder_out)[0]
            state: dict = {}
            steps = [supernet.decoder(prev[:, : t + 1], encoder_out, incremental_state=state)[0]
                     for t in range(prev.size(1))]
        assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_running_ranges_are_saved_and_restored(builders, task):
    space = builders.tiny
    supernet = _quant_supernet(builders, task, space, "shared", seed=8)
    sub = builders.covering_subnets(space, 1, seed=9)[0]
    supernet.set_subnet(sub)
    batch = builders.token_batch(task, seed=10)
    _calibrated(supernet, [batch])
    state = supernet.state_dict()
    ranges = {k: v for k, v in state.items() if ".range." in k}
    assert any("operand_quant" in k for k in ranges) and any("mixer_quant" in k for k in ranges)
    assert any(bool(v) for k, v in ranges.items() if k.endswith("initialized"))
    restored = _quant_supernet(builders, task, space, "shared", seed=11)
    restored.load_state_dict(state)
    restored.set_subnet(sub)
    restored.eval()
    assert_close(restored(*batch)[0], supernet(*batch)[0])
    with torch.no_grad():  # the ranges take part: other ranges, other outputs
        for key in ranges:
            if key.endswith(".high"):
                restored.get_buffer(key).mul_(3.0)
    assert not torch.allclose(restored(*batch)[0], supernet(*batch)[0], atol=1e-3)


@pytest.mark.parametrize("bits", [1, 17, 8.0, True])
def test_bad_quant_bits_is_refused_with_the_field_name(task, builders, bits):
    with pytest.raises(ValueError, match=r"quant_bits must be an integer in \[2, 16\]"):
        ShiftAddSupernet.from_space(SupernetConfig(space="tiny", quant_bits=bits), task, builders.tiny)
