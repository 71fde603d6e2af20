"""``fairseq-shiftadd-cost``: table and JSON reports, subnet specs, errors."""
from __future__ import annotations

import json
import subprocess

import pytest

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.cost.cli import main
from fairseq_shiftadd.space import get_space, largest


def test_json_report_equals_cost_model(capsys):
    main(["--space", "tiny", "--subnet", "largest", "--bits", "8", "--beam", "2", "--vocab-size", "500", "--json"])
    data = json.loads(capsys.readouterr().out)
    space = get_space("tiny")
    expected = CostModel(space, workload=Workload(beam=2, bits=8, vocab_size=500)).metrics(largest(space))
    assert data["metrics"] == pytest.approx(expected)
    assert data["workload"]["bits"] == 8 and data["profile"] == "45nm"


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
