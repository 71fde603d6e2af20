"""fairseq compatibility: checkpoint loading on torch >= 2.6, the --user-dir double import, dropped batches,
unreadable checkpoints, non-finite validation losses (best checkpoint, --patience) and
fairseq-interactive on raw words."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import fairseq_shiftadd  # noqa: F401  (installs the compatibility fixes)
from fairseq import checkpoint_utils
from fairseq_shiftadd.cli_errors import InputError
from fairseq_shiftadd.compat import load_checkpoint_file

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


@pytest.mark.parametrize("batch_size, multiple", [(100, 8), (128, 8), (7, 8), (64, 1)])
def test_batch_by_size_keeps_every_sentence(batch_size: int, multiple: int) -> None:
    """fairseq 0.12 dropped the last batch when its size was not a multiple of 8 (1,008 of 1,014 decoded)."""
    from fairseq.data import data_utils

    indices = np.random.default_rng(0).permutation(1014)
    lengths = np.random.default_rng(1).integers(3, 40, size=1014)
    batches = data_utils.batch_by_size(indices, None, num_tokens_vec=lengths[indices],
                                       max_sentences=batch_size, required_batch_size_multiple=multiple)
    assert np.array_equal(np.concatenate(batches), indices)  # every sentence once, in order
    assert all(len(b) <= batch_size for b in batches)


def test_unreadable_checkpoint_is_named_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "checkpoint_last.pt"
    bad.write_bytes(b"\x80\x02garbage that is not a checkpoint\xff\xfe")
    with pytest.raises(InputError, match=r"checkpoint_last.pt: not a readable checkpoint") as err:
        checkpoint_utils.load_checkpoint_to_cpu(str(bad))
    assert "\n" not in str(err.value)
    truncated = tmp_path / "truncated.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(InputError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint_file(truncated)


def test_non_finite_validation_loss_is_never_the_best(tmp_path: Path) -> None:
    """``min(nan, x)`` is nan: without the fix one NaN validation became fairseq's best forever."""
    from fairseq.dataclass.configs import CheckpointConfig

    cfg = CheckpointConfig(save_dir=str(tmp_path), no_save=True)
    trainer = argparse.Namespace(data_parallel_rank=0)
    save = checkpoint_utils.save_checkpoint
    if hasattr(save, "best"):
        del save.best
    try:
        save(cfg, trainer, None, float("nan"))
        assert not hasattr(save, "best")  # a NaN first validation is no best
        for loss in (4.0, float("nan"), float("inf"), 5.0):
            save(cfg, trainer, None, loss)
            assert save.best == 4.0
        save(cfg, trainer, None, 3.5)
        assert checkpoint_utils.save_checkpoint.best == 3.5
    finally:
        if hasattr(save, "best"):
            del save.best


def test_patience_never_takes_a_non_finite_loss_as_best() -> None:
    """fairseq alone: a NaN first validation became the best and --patience 2 stopped an improving run."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq_cli import train

    cfg = FairseqConfig()
    cfg.checkpoint.patience = 2
    stop = train.should_stop_early

    def run(losses: List[float]) -> List[bool]:
        for name in ("best", "num_runs"):
            stop.__dict__.pop(name, None)
        try:
            return [stop(cfg, loss) for loss in losses]
        finally:
            for name in ("best", "num_runs"):
                stop.__dict__.pop(name, None)

    assert run([float("nan"), 5.0, 4.0, 3.0]) == [False] * 4  # fairseq alone stops at 4.0
    assert run([5.0, float("inf"), 4.0, float("nan"), float("nan")]) == [False, False, False, False, True]
    assert run([5.0, 6.0, 7.0]) == [False, False, True]  # finite losses: fairseq's own rule


def _translation_dir(path: Path, symbols: Tuple[str, ...]) -> Path:
    path.mkdir()
    for lang in ("en", "de"):
        (path / f"dict.{lang}.txt").write_text("".join(f"{s} 1\n" for s in symbols), encoding="utf-8")
    return path


def test_interactive_without_sentencepiece_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    """Raw words looked up in a dictionary of pieces silently become <unk>: refused before the checkpoint loads."""
    from fairseq import options
    from fairseq_cli import interactive

    def main(data: Path) -> None:
        parser = options.get_interactive_generation_parser()
        args = options.parse_args_and_arch(parser, [str(data), "--path", str(tmp_path / "missing.pt"),
                                                    "--source-lang", "en", "--target-lang", "de"])
        interactive.main(args)

    pieces = _translation_dir(tmp_path / "pieces", ("▁A", "▁man", "s", "▁ride", "▁a", "."))
    with pytest.raises(InputError, match="pass --bpe sentencepiece --sentencepiece-model"):
        main(pieces)  # fairseq alone: fails on missing.pt first, then decodes raw words as <unk>
    words = _translation_dir(tmp_path / "words", ("A", "man", "rides", "a", "bike", "."))
    with pytest.raises(Exception, match="missing.pt") as loading:  # a word dictionary: on to loading the model
        main(words)
    assert not isinstance(loading.value, InputError) or "sentencepiece" not in str(loading.value)
