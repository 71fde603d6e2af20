"""``fairseq-shiftadd-cost``: table and JSON reports, subnet specs, errors."""
from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from fairseq_shiftadd.cost import CostModel, Workload, workload_header
from fairseq_shiftadd.cost.cli import main
from fairseq_shiftadd.ops.kinds import BlockType
from fairseq_shiftadd.space import BlockDetails, SearchSpace, SpaceRecord, SubnetConfig, get_space, largest


def test_json_report_equals_cost_model(capsys):
    main(["--space", "tiny", "--subnet", "largest", "--bits", "8", "--beam", "2", "--vocab-size", "500", "--json"])
    data = json.loads(capsys.readouterr().out)
    space = get_space("tiny")
    expected = CostModel(space, workload=Workload(beam=2, bits=8, vocab_size=500)).metrics(largest(space))
    assert data["metrics"] == pytest.approx(expected)
    assert data["workload"]["bits"] == 8 and data["profile"] == "45nm"


def test_block_details_cost_what_the_model_computes(capsys):
    space = get_space("tiny")
    sub = largest(space, block=BlockType.ATTENTION_LIGHTWEIGHT_ADD)
    energy = {}
    for details in BlockDetails:
        main(["--space", "tiny", "--subnet", sub.to_json(), "--block-details", details.value, "--json"])
        energy[details] = json.loads(capsys.readouterr().out)["metrics"]["energy_mj"]
        expected = CostModel(dataclasses.replace(space, block_details=details)).metrics(sub)["energy_mj"]
        assert energy[details] == pytest.approx(expected)
    assert energy[BlockDetails.ORIGINAL] > energy[BlockDetails.COMPACT]  # the branch's Q/K/V at 128, not 64


def test_subnet_file_and_inline_json(tmp_path, capsys):
    sub = largest(get_space("tiny"))
    path = tmp_path / "sub.yaml"
    sub.save(path)
    main(["--space", "tiny", "--subnet", str(path)])
    from_file = capsys.readouterr().out
    main(["--space", "tiny", "--subnet", sub.to_json()])
    assert capsys.readouterr().out == from_file
    assert "output_projection" in from_file and "total: energy" in from_file


@pytest.mark.parametrize("argv, message", [
    (["--space", "tiny", "--subnet", "nowhere.yaml"], "--subnet 'nowhere.yaml': no such file"),
    (["--space", "tiny", "--profile", "3nm"], "neither a shipped profile"),
    (["--space", "nope"], "space name='nope'"),
])
def test_errors_exit_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("fairseq-shiftadd-cost: error: ") and message in err and err.count("\n") == 1


def test_console_script():
    out = subprocess.run(["fairseq-shiftadd-cost", "--space", "tiny", "--subnet", "smallest"],
                         capture_output=True, text=True, check=True).stdout
    assert "encoder.0" in out and "mJ" in out


def test_accounting_flag_and_table_label(capsys):
    main(["--space", "tiny", "--subnet", "largest", "--accounting", "original", "--json"])
    data = json.loads(capsys.readouterr().out)
    space = get_space("tiny")
    expected = CostModel(space, workload=Workload(accounting="original")).metrics(largest(space))
    assert data["metrics"] == pytest.approx(expected) and data["workload"]["accounting"] == "original"
    assert 0 < data["fixed_energy_share"] <= 1
    main(["--space", "tiny", "--subnet", "largest", "--accounting", "original"])
    table = capsys.readouterr().out
    assert "original accounting" in table and "fixed energy" in table
    with pytest.raises(SystemExit):
        main(["--space", "tiny", "--accounting", "original", "--beam", "4"])
    assert "beam=4: the original accounting" in capsys.readouterr().err


def test_subnet_file_from_the_search_is_costed_with_its_recorded_workload(tmp_path, capsys):
    """``--subnet best.yaml`` without flags reproduces the search's metrics (its vocabulary, beam, accounting)."""
    from fairseq_shiftadd.search.evolution import SearchResult
    from fairseq_shiftadd.search.report import write_best
    from fairseq_shiftadd.search.state import Candidate

    space = get_space("tiny")
    sub = largest(space)
    for accounting, beam in (("streaming", 5), ("original", 1)):
        workload = Workload(beam=beam, bits=8, vocab_size=8008, accounting=accounting)
        metrics = CostModel(space, profile="45nm", workload=workload).metrics(sub)  # what the search records
        best = Candidate(sub, generation=0, feasible=True, fitness=3.0, metrics=metrics)
        result = SearchResult(best=[best], candidates=[best], populations=[[0]], evaluations=1, new_evaluations=1,
                              stats=[])
        [path] = write_best(tmp_path, result, "loss", pareto=False, records=(workload_header(workload, "45nm"),))
        main(["--space", "tiny", "--subnet", str(path), "--json"])
        data = json.loads(capsys.readouterr().out)
        assert data["metrics"] == pytest.approx(metrics)
        assert data["workload"] == {**vars(workload)} and data["profile"] == "45nm"
    main(["--space", "tiny", "--subnet", str(path), "--accounting", "streaming", "--json"])  # flags override
    data = json.loads(capsys.readouterr().out)
    assert data["workload"]["accounting"] == "streaming" and data["workload"]["vocab_size"] == 8008


def _demo_best(path: Path, space: SearchSpace, workload: Workload, record_space: bool = True) -> SubnetConfig:
    """A ``best.yaml`` as the CPU demo's search writes it, of a subnet with two-branch and lightweight blocks (whose
    cost depends on the block details); without the space record with ``record_space=False`` (an older file)."""
    sub = largest(space, block=BlockType.ATTENTION_LIGHTWEIGHT_ADD)
    records = [workload_header(workload, "45nm")] + ([SpaceRecord.of(space).header()] if record_space else [])
    path.write_text("# loss: 3.1\n" + "\n".join(records) + "\n" + sub.to_yaml())
    return sub


def _cost_json(argv, capsys) -> dict:
    main(argv + ["--json"])
    return json.loads(capsys.readouterr().out)


def test_demo_best_yaml_is_costed_in_its_recorded_space_without_flags(tmp_path, capsys):
    """The demo's best.yaml (space demo, compact block details) costs the same without flags as with them, and as
    the cost model of that space; the original block details would give other numbers."""
    space = dataclasses.replace(get_space("demo"), block_details=BlockDetails.COMPACT)
    workload = Workload(beam=5, vocab_size=8008)
    sub = _demo_best(tmp_path / "best.yaml", space, workload)
    bare = _cost_json(["--subnet", str(tmp_path / "best.yaml")], capsys)
    flagged = _cost_json(["--space", "demo", "--block-details", "compact", "--subnet", str(tmp_path / "best.yaml")],
                         capsys)
    assert bare == flagged
    assert bare["metrics"] == pytest.approx(CostModel(space, "45nm", workload).metrics(sub))
    original = CostModel(get_space("demo"), "45nm", workload).metrics(sub)["energy_mj"]
    assert bare["metrics"]["energy_mj"] != pytest.approx(original)


def test_block_detail_overrides_of_the_record_are_costed(tmp_path, capsys):
    space = dataclasses.replace(get_space("demo"), block_details=BlockDetails.COMPACT, two_branch_kernel_heads=2)
    sub = _demo_best(tmp_path / "best.yaml", space, Workload())
    costed = _cost_json(["--block-details", "compact", "--subnet", str(tmp_path / "best.yaml")], capsys)
    assert costed["metrics"] == pytest.approx(CostModel(space).metrics(sub))
    assert costed["metrics"] != pytest.approx(CostModel(dataclasses.replace(space, two_branch_kernel_heads=0))
                                              .metrics(sub))


@pytest.mark.parametrize("flags, used", [
    (["--block-details", "original"], "space 'demo' (block_details 'original')"),
    (["--space", "tiny"], "space 'tiny' (block_details 'compact')"),
])
def test_flags_that_contradict_the_record_are_one_line_naming_both(tmp_path, capsys, flags, used):
    space = dataclasses.replace(get_space("demo"), block_details=BlockDetails.COMPACT)
    _demo_best(tmp_path / "best.yaml", space, Workload())
    with pytest.raises(SystemExit) as exit_info:
        main(flags + ["--subnet", str(tmp_path / "best.yaml")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err == (f"fairseq-shiftadd-cost: error: --subnet '{tmp_path / 'best.yaml'}' records that it was searched "
                   f"in space 'demo' (block_details 'compact'), not in {used} as used here: use it with --space demo "
                   "--block-details compact\n")


def test_a_file_without_the_space_record_is_costed_as_before(tmp_path, capsys):
    """An older best.yaml (workload only): the flags' space, by default wmt14_en_de with the original details."""
    space = dataclasses.replace(get_space("demo"), block_details=BlockDetails.COMPACT)
    workload = Workload(beam=5, vocab_size=8008)
    sub = _demo_best(tmp_path / "old.yaml", space, workload, record_space=False)
    flagged = _cost_json(["--space", "demo", "--block-details", "compact", "--subnet", str(tmp_path / "old.yaml")],
                         capsys)
    assert flagged["metrics"] == pytest.approx(CostModel(space, "45nm", workload).metrics(sub))
    demo = _cost_json(["--space", "demo", "--subnet", str(tmp_path / "old.yaml")], capsys)
    assert demo["metrics"] == pytest.approx(CostModel(get_space("demo"), "45nm", workload).metrics(sub))
    with pytest.raises(SystemExit):
        main(["--subnet", str(tmp_path / "old.yaml")])
    assert "not in space 'wmt14_en_de': encoder_embed_dim=128" in capsys.readouterr().err


def test_bits_offers_the_shipped_widths_and_help_shows_every_default(capsys):
    from fairseq_shiftadd.cost.cli import _parser, shipped_bit_widths

    assert shipped_bit_widths() == (32, 8)
    with pytest.raises(SystemExit):
        main(["--space", "tiny", "--bits", "16"])
    assert "invalid choice: 16 (choose from 32, 8)" in capsys.readouterr().err
    for action in _parser()._actions:
        if action.dest != "help":
            assert "default" in action.help, action.dest
