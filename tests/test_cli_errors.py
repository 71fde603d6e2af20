"""One-line errors: which exceptions are input errors, --debug, the short usage and fairseq's exception hook."""
import argparse
import subprocess
import sys

import pytest

from fairseq_shiftadd.cli_errors import InputError, one_line, run_main, short_usage


def _failing(err: Exception):
    def main(argv):
        raise err
    return run_main(main, "tool")


@pytest.mark.parametrize("err, line", [
    (InputError("--subnet 'x': no such file"), "tool: error: --subnet 'x': no such file"),
    (ValueError("decoder[2].ffn_dim=5000 not in allowed values\n(3072, 2048)"),
     "tool: error: decoder[2].ffn_dim=5000 not in allowed values (3072, 2048)"),
    (FileNotFoundError(2, "No such file or directory", "/x/lat.csv"),
     "tool: error: /x/lat.csv: No such file or directory"),
])
def test_input_errors_are_one_line_with_exit_2(err, line, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _failing(err)([])
    assert exit_info.value.code == 2 and capsys.readouterr().err == line + "\n"


def test_bugs_and_debug_keep_the_traceback(monkeypatch) -> None:
    assert one_line(KeyError("x")) is None and one_line(TypeError("x")) is None
    with pytest.raises(KeyError):
        _failing(KeyError("bug"))([])
    with pytest.raises(InputError):
        _failing(InputError("bad"))(["--debug"])
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_DEBUG", "1")
    with pytest.raises(InputError):
        _failing(InputError("bad"))([])


def test_debug_is_removed_before_main_parses(capsys) -> None:
    seen = []
    run_main(seen.append, "tool")(["--a", "--debug", "b"])
    assert seen == [["--a", "b"]]


def test_short_usage_prints_synopsis_and_error_only(capsys) -> None:
    parser = short_usage(argparse.ArgumentParser(prog="tool"), "DATA --path CKPT")
    for i in range(50):
        parser.add_argument(f"--option-{i}")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--nope"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "usage: tool DATA --path CKPT  (--help lists every option)", "tool: error: unrecognized arguments: --nope"]


def test_fairseq_commands_print_an_uncaught_input_error_as_one_line() -> None:
    """As a fairseq command runs: fairseq imported, then the plugin (``--user-dir``), which installs the hook."""
    code = ("import fairseq, fairseq_shiftadd, sys; from fairseq_shiftadd.cli_errors import InputError; "
            "sys.argv = ['fairseq-train']; raise InputError('--space nope: not allowed')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == "fairseq-train: error: --space nope: not allowed"
    bug = subprocess.run([sys.executable, "-c", "import fairseq, fairseq_shiftadd; raise KeyError('bug')"],
                         capture_output=True, text=True, timeout=120)
    assert bug.returncode == 1 and "Traceback" in bug.stderr
