"""argparse types (fairseq_shiftadd.cli_types): valid text parses; bad text is one line naming the flag and the
allowed values, in the words of the value checks (ops/validate.py)."""
import argparse

import pytest

from fairseq_shiftadd.cli_errors import short_usage
from fairseq_shiftadd.cli_types import int_at_least, non_negative_int, positive_int


def _parser() -> argparse.ArgumentParser:
    parser = short_usage(argparse.ArgumentParser(prog="tool"), "--beam N")
    parser.add_argument("--beam", type=positive_int)
    parser.add_argument("--warmup", type=non_negative_int)
    parser.add_argument("--vocab-size", type=int_at_least(100))
    return parser


def test_valid_values_parse() -> None:
    args = _parser().parse_args(["--beam", "1", "--warmup", "0", "--vocab-size", "100"])
    assert (args.beam, args.warmup, args.vocab_size) == (1, 0, 100)


@pytest.mark.parametrize("argv, line", [
    (["--beam", "0"], "tool: error: argument --beam: must be a positive integer, got 0"),
    (["--beam", "2.5"], "tool: error: argument --beam: must be a positive integer, got 2.5"),
    (["--warmup", "-1"], "tool: error: argument --warmup: must be an integer >= 0, got -1"),
    (["--vocab-size", "99"], "tool: error: argument --vocab-size: must be an integer >= 100, got 99"),
    (["--vocab-size", "many"], "tool: error: argument --vocab-size: must be an integer >= 100, got many"),
])
def test_bad_values_are_one_line_naming_the_flag(argv, line, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[1:] == [line]
