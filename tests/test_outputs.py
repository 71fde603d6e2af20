"""Outputs never replace an input, and replace a result only with --force."""
from pathlib import Path

import pytest

from fairseq_shiftadd.cli_errors import InputError
from fairseq_shiftadd.outputs import check_output


def test_check_output(tmp_path: Path) -> None:
    ckpt, out = tmp_path / "supernet.pt", tmp_path / "sub.pt"
    ckpt.write_bytes(b"x")
    check_output(out, [ckpt], force=False)  # a new file: fine
    with pytest.raises(InputError, match="is one of the inputs"):
        check_output(tmp_path / "." / "supernet.pt", [ckpt], force=True)  # --force never overwrites an input
    out.write_bytes(b"old")
    with pytest.raises(InputError, match=r"--output .*sub.pt exists: pass --force"):
        check_output(out, [ckpt], force=False)
    check_output(out, [ckpt], force=True)

