"""fairseq compatibility: checkpoint loading on torch >= 2.6 and the --user-dir double import."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import fairseq_shiftadd  # noqa: F401  (installs the compatibility fixes)
from fairseq import checkpoint_utils

REPO = Path(__file__).resolve().parents[1]


def _fairseq_like_checkpoint(path: Path) -> None:
    """A checkpoint with what fairseq pickles besides tensors: a Namespace and an omegaconf config."""
    torch.save(
        {
            "args": argparse.Namespace(arch="transformer", lr=[0.001]),
            "cfg": OmegaConf.create({"model": {"_name": "transformer"}, "common": {"seed": 1}}),
            "model": {"w": torch.arange(4.0)},
            "extra_state": {"epoch": 3},
            "optimizer_history": [
                {"criterion_name": "x", "optimizer_name": "adam", "lr_scheduler_state": {"best": 1.0}, "num_updates": 5}
            ],
            "last_optimizer_state": {},
        },
        path,
    )


def test_plain_torch_load_still_refuses_pickles(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    _fairseq_like_checkpoint(path)
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        torch.load(path)


def test_fairseq_loader_reads_pickled_config(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    _fairseq_like_checkpoint(path)
    state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert torch.equal(state["model"]["w"], torch.arange(4.0))
    assert state["extra_state"]["epoch"] == 3


def test_user_dir_copy_already_imported(tmp_path: Path) -> None:
    """An installed copy is imported; --user-dir names another copy: fairseq would refuse, we warn."""
    other = tmp_path / "checkout" / "fairseq_shiftadd"
    shutil.copytree(REPO / "fairseq_shiftadd", other, ignore=shutil.ignore_patterns("__pycache__"))
    script = f"""
import argparse, logging
logging.basicConfig(level=logging.WARNING)
import fairseq_shiftadd
from fairseq import utils
ns = argparse.Namespace(user_dir={str(other)!r})
try:
    utils.import_user_module.__wrapped__(ns)
except ImportError as err:
    print("fairseq alone:", "not globally unique" in str(err))
utils.import_user_module(ns)
print("loaded from:", fairseq_shiftadd.__file__)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "fairseq alone: True" in result.stdout
    assert f"loaded from: {REPO / 'fairseq_shiftadd' / '__init__.py'}" in result.stdout
    assert "already imported" in result.stderr
