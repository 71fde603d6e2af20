"""Outputs never replace an input, replace a result only with --force, and are never half-written."""
from pathlib import Path

import pytest
import torch

from fairseq_shiftadd.cli_errors import InputError
from fairseq_shiftadd.outputs import check_output, save_atomically


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


def test_save_atomically_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "avg.pt"
    save_atomically({"model": {"w": torch.ones(2)}}, out)
    assert torch.equal(torch.load(out)["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in out.parent.iterdir()) == ["avg.pt"]
