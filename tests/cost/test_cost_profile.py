"""Hardware profile YAML: the shipped 45 nm table, and clear errors for invalid files."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from fairseq_shiftadd.cost import CostModel, HardwareProfile, load_profile, shipped_profiles
from fairseq_shiftadd.cost.profile import PROFILE_DIR
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.space import get_space, smallest


def _data() -> dict:
    return yaml.safe_load((PROFILE_DIR / "45nm.yaml").read_text())


def test_shipped_45nm_holds_method_table():
    assert "45nm" in shipped_profiles()
    profile = load_profile("45nm")
    expected = {("mult", 32): 3.7, ("add", 32): 0.9, ("shift", 32): 0.13,
                ("mult", 8): 0.2, ("add", 8): 0.03, ("shift", 8): 0.024}
    assert {(k.value, b): e for (k, b), e in profile.compute_pj.items()} == expected
    assert dict(profile.memory_pj_per_16bit) == pytest.approx(
        {"dram": 200.0, "global_buffer": 6 * 3.7, "noc": 2 * 3.7, "rf": 3.7})
    assert profile.bit_widths == (32, 8)
    assert profile.accelerator.num_pes == 16 * 12 and profile.accelerator.clock_mhz == 250


def test_load_by_path_and_instance(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    data = _data()
    data["name"] = "mine"
    data["compute"]["mult"][32] = 4.0
    path.write_text(yaml.safe_dump(data))
    profile = load_profile(str(path))
    assert profile.name == "mine" and profile.compute_pj[(OpKind.MULT, 32)] == 4.0
    assert load_profile(profile) is profile
    space = get_space("tiny")
    a = CostModel(space, profile=path).metrics(smallest(space))["energy_mj"]
    b = CostModel(space, profile="45nm").metrics(smallest(space))["energy_mj"]
    assert a > b


def _mutated(edit) -> dict:
    data = copy.deepcopy(_data())
    edit(data)
    return data


@pytest.mark.parametrize("edit, key, problem", [
    (lambda d: d["compute"].pop("add"), "compute.add", "missing key"),
    (lambda d: d.pop("memory"), "memory", "missing key"),
    (lambda d: d["accelerator"].pop("clock_mhz"), "accelerator.clock_mhz", "missing key"),
    (lambda d: d["compute"]["mult"].__setitem__(32, -1.0), "compute.mult.32", "non-negative"),
    (lambda d: d["memory"].__setitem__("dram", -5), "memory.dram", "non-negative"),
    (lambda d: d["compute"]["shift"].__setitem__(8, "cheap"), "compute.shift.8", "finite number"),
    (lambda d: d["compute"].__setitem__("div", {32: 5.0, 8: 1.0}), "compute.div", "unknown key"),
    (lambda d: d["memory"].__setitem__("l2", 10.0), "memory.l2", "unknown key"),
    (lambda d: d["compute"]["mult"].__setitem__(12, 1.0), "compute.mult.12", "unknown bit width"),
    (lambda d: d["compute"]["add"].pop(8), "compute.add", "lists bit widths"),
    (lambda d: d["accelerator"].__setitem__("pe_rows", 0), "accelerator.pe_rows", "positive integer"),
    (lambda d: d["accelerator"]["cycles_per_term"].pop("shift"), "accelerator.cycles_per_term.shift", "missing"),
    (lambda d: d.__setitem__("extra", 1), "extra", "unknown key"),
])
def test_invalid_profiles_name_file_and_key(tmp_path: Path, edit, key, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_mutated(edit)))
    with pytest.raises(ValueError) as err:
        load_profile(path)
    message = str(err.value)
    assert str(path) in message and f"{key}:" in message and problem in message, message


def test_unknown_name_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ValueError, match="neither a shipped profile"):
        load_profile("7nm")
    with pytest.raises(ValueError, match="not found"):
        load_profile(str(tmp_path / "absent.yaml"))
    bad = tmp_path / "broken.yaml"
    bad.write_text("compute: [1, 2\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_profile(bad)
    with pytest.raises(ValueError, match="<dict>: <top level>: must be a mapping"):
        HardwareProfile.from_dict([1, 2])
