"""Weight-slot state-dict keys: what they are today, and checkpoints saved with the old keys still load.

``fixtures/old_slot_keys.pt`` holds tiny supernets and standalone subnets (sharing none / shared / heterogeneous,
8-bit quantisers, DeepShift-PS) saved by the code of before the rename, with their outputs; see
``fixtures/make_old_slot_keys.py``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from fairseq_shiftadd.averaging import average_checkpoints
from fairseq_shiftadd.models.legacy_keys import legacy_key, upgrade_legacy_keys
from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig
from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.space import SearchSpace, SubnetConfig

FIXTURE = torch.load(Path(__file__).with_name("fixtures") / "old_slot_keys.pt", weights_only=False)
SPACE = SearchSpace.from_json(FIXTURE["space"])


def _build(task, entry):
    """Today's model of a fixture entry (freshly initialised), in eval mode."""
    fields = entry["fields"]
    sub = SubnetConfig.from_json(entry["subnet"])
    if entry["standalone"]:
        cfg = SubnetModelConfig(space=SPACE.name, **{k: v for k, v in fields.items() if k != "sharing"})
        return ShiftAddTransformer.from_subnet(cfg, task, SPACE, sub).eval()
    model = ShiftAddSupernet.from_space(SupernetConfig(space=SPACE.name, **fields), task, SPACE)
    model.set_subnet(sub)
    return model.eval()


def _log_probs(model):
    with torch.no_grad():
        return torch.log_softmax(model(*FIXTURE["batch"])[0], dim=-1)


@pytest.mark.parametrize("name", list(FIXTURE["entries"]))
def test_old_checkpoint_loads_and_computes_as_before(task, name):
    entry = FIXTURE["entries"][name]
    old = dict(entry["state"])
    assert any(".weight.weights." in key for key in old)  # the fixture really has the old keys
    model = _build(task, entry)
    assert len(old) == len(model.state_dict()) and set(old) != set(model.state_dict())  # same tensors, renamed
    model.load_state_dict(old)  # fairseq's load: upgrade_state_dict_named rewrites the keys, then strict
    assert_close(_log_probs(model), entry["log_probs"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["supernet_heterogeneous", "subnet_none_quant_ps"])
def test_upgrade_legacy_keys_of_a_whole_state_dict_equals_the_models_own(task, name):
    entry = FIXTURE["entries"][name]
    model = _build(task, entry)
    upgraded = upgrade_legacy_keys(entry["state"])
    assert set(upgraded) == set(model.state_dict())
    model.load_state_dict(dict(entry["state"]))
    assert all(torch.equal(upgraded[k], v) for k, v in model.state_dict().items())
    assert upgrade_legacy_keys(upgraded) == upgraded  # today's keys pass unchanged


def test_checkpoints_with_old_and_new_keys_average_together(task, tmp_path):
    entry = FIXTURE["entries"]["supernet_heterogeneous"]
    model = _build(task, entry)
    model.load_state_dict(dict(entry["state"]))
    paths = [tmp_path / "old.pt", tmp_path / "new.pt"]  # a run resumed across the rename
    torch.save({"model": dict(entry["state"])}, paths[0])
    torch.save({"model": model.state_dict()}, paths[1])
    averaged = _build(task, entry)
    averaged.load_state_dict(average_checkpoints(paths)["model"])
    assert_close(_log_probs(averaged), entry["log_probs"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("old, new", [
    ("shared.weight.weights.shared", "weight.shared"),
    ("mult.weight.weights.mult", "weight.mult"),
    ("attention+lightweight_add.weight.weights.add", "weight.attention+lightweight_add"),
    ("shift.weight.exponent", "ps_weight.shift.exponent"),
    ("shift.weight.sign", "ps_weight.shift.sign"),
    ("shared.weight.remaps.add.log_scale", "remap.add.log_scale"),
    ("shared.bias", "bias.shared"),
])
def test_legacy_key_mapping(old, new):
    keys = ("shared", "mult", "shift", "attention+lightweight_add")
    assert legacy_key(old, keys) == new
    assert legacy_key(new, keys) is None  # today's keys are left alone


@pytest.mark.parametrize("key", ["operand_quant.mult.range.low", "other.bias", "weight.shared"])
def test_legacy_key_ignores_keys_that_are_not_old_slot_keys(key):
    assert legacy_key(key, ("shared", "mult")) is None
