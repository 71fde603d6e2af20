"""``fairseq-shiftadd-cost``: table and JSON reports, subnet specs, errors."""
from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.cost.cli import main
from fairseq_shiftadd.ops.kinds import BlockType
from fairseq_shiftadd.space import BlockDetails, get_space, largest


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
    from fairseq_shiftadd.cost import workload_header

    space = get_space("tiny")
    sub = largest(space)
    for accounting, beam in (("streaming", 5), ("original", 1)):
        workload = Workload(beam=beam, bits=8, vocab_size=8008, accounting=accounting)
        metrics = CostModel(space, profile="45nm", workload=workload).metrics(sub)  # what the search records
        best = Candidate(sub, generation=0, feasible=True, fitness=3.0, metrics=metrics)
        result = SearchResult(best=[best], candidates=[best], populations=[[0]], evaluations=1, new_evaluations=1,
                              stats=[])
        [path] = write_best(tmp_path, result, "loss", pareto=False, cost_record=workload_header(workload, "45nm"))
        main(["--space", "tiny", "--subnet", str(path), "--json"])
        data = json.loads(capsys.readouterr().out)
        assert data["metrics"] == pytest.approx(metrics)
        assert data["workload"] == {**vars(workload)} and data["profile"] == "45nm"
    main(["--space", "tiny", "--subnet", str(path), "--accounting", "streaming", "--json"])  # flags override
    data = json.loads(capsys.readouterr().out)
    assert data["workload"]["accounting"] == "streaming" and data["workload"]["vocab_size"] == 8008


def test_bits_offers_the_shipped_widths_and_help_shows_every_default(capsys):
    from fairseq_shiftadd.cost.cli import _parser, shipped_bit_widths

    assert shipped_bit_widths() == (32, 8)
    with pytest.raises(SystemExit):
        main(["--space", "tiny", "--bits", "16"])
    assert "invalid choice: 16 (choose from 32, 8)" in capsys.readouterr().err
    for action in _parser()._actions:
        if action.dest != "help":
            assert "default" in action.help, action.dest
