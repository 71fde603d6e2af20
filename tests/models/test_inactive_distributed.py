"""2-rank gloo ``fairseq-train`` (``legacy_ddp``, weight decay): candidates the update's subnet did not use stand still.

``legacy_ddp`` fills missing gradients with zeros before the step; without the task's guard, Adam would move
every inactive candidate from its stale momentum. The supernet trains for a few updates on a synthetic corpus,
saving a checkpoint after every update; between consecutive checkpoints every parameter that the update's
subnet did not touch must keep its weight and Adam state bit for bit.
"""
from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from fairseq import checkpoint_utils

REPO = Path(__file__).resolve().parents[2]
UPDATES = 5
SEED = 1

pytestmark = pytest.mark.slow


def _exe(name: str) -> str:
    exe = shutil.which(name)
    assert exe is not None, f"{name} is not installed"
    return exe


def _corpus(root: Path) -> Path:
    """A random 40-word parallel corpus (400 train, 8 valid pairs: more than one epoch of updates), binarised with one
    joined dictionary."""
    rng = random.Random(0)
    raw = root / "raw"
    raw.mkdir()
    for split, count in (("train", 400), ("valid", 8)):
        for lang in ("en", "de"):
            lines = (" ".join(f"w{rng.randrange(40)}" for _ in range(rng.randint(3, 9))) for _ in range(count))
            (raw / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
    data = root / "bin"
    subprocess.run(
        [_exe("fairseq-preprocess"), "--source-lang", "en", "--target-lang", "de", "--trainpref", str(raw / "train"),
         "--validpref", str(raw / "valid"), "--destdir", str(data), "--joined-dictionary", "--workers", "1"],
        check=True, capture_output=True, cwd=REPO, timeout=300,
    )
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_two_ranks(data: Path, save_dir: Path) -> None:
    port = _free_port()
    common = [
        _exe("fairseq-train"), str(data), "--user-dir", "fairseq_shiftadd", "--task", "shiftadd_translation",
        "--arch", "shiftadd_supernet_tiny", "--sharing", "none", "--criterion", "shiftadd_label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.01",
        "--lr", "1e-3", "--max-tokens", "200", "--max-update", str(UPDATES), "--save-interval-updates", "1",
        "--keep-interval-updates", "-1", "--no-epoch-checkpoints", "--disable-validation", "--save-dir", str(save_dir),
        "--seed", str(SEED), "--num-workers", "0", "--cpu", "--ddp-backend", "legacy_ddp",
        "--distributed-world-size", "2", "--distributed-backend", "gloo", "--distributed-no-spawn",
        "--distributed-init-method", f"tcp://127.0.0.1:{port}",
    ]
    ranks = [subprocess.Popen(common + ["--distributed-rank", str(r)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = [rank.communicate(timeout=900)[0] for rank in ranks]
    for rank, log in zip(ranks, logs):
        assert rank.returncode == 0, log[-3000:]
    assert "distributed init (rank 1)" in logs[1], logs[1][-2000:]  # two ranks really trained together


def _checkpoints(save_dir: Path) -> dict:
    found = {}
    for path in save_dir.glob("checkpoint_*_*.pt"):
        found[int(re.fullmatch(r"checkpoint_\d+_(\d+)\.pt", path.name).group(1))] = path
    return found


def _touched(model, task, update_num: int, sample_tokens: torch.Tensor) -> set:
    """Names of the parameters the subnet(s) of ``update_num`` read (those a backward pass reaches)."""
    model.zero_grad(set_to_none=True)
    for sub in task.train_subnets(model, update_num):
        model.set_subnet(sub)
        lengths = torch.full((sample_tokens.size(0),), sample_tokens.size(1))
        model(sample_tokens, lengths, sample_tokens)[0].sum().backward()
    return {name for name, p in model.named_parameters() if p.grad is not None}


def test_two_rank_legacy_ddp_leaves_inactive_candidates_bit_identical(tmp_path: Path) -> None:
    data = _corpus(tmp_path)
    save_dir = tmp_path / "checkpoints"
    _train_two_ranks(data, save_dir)
    paths = _checkpoints(save_dir)
    assert sorted(paths) == list(range(1, UPDATES + 1))
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(paths[1])], arg_overrides={"data": str(data)})
    model = models[0].train()
    names = [name for name, _ in model.named_parameters()]
    tokens = torch.full((2, 4), task.source_dictionary.index("w1"))
    states = {k: torch.load(p, map_location="cpu", weights_only=False) for k, p in paths.items()}
    stale_momentum = 0
    for k in range(2, UPDATES + 1):
        before, after = states[k - 1], states[k]
        touched = _touched(model, task, k - 1, tokens)  # checkpoint k is saved after update_num k - 1
        assert touched and len(touched) < len(names)
        opt_before, opt_after = before["last_optimizer_state"]["state"], after["last_optimizer_state"]["state"]
        for index, name in enumerate(names):
            if name in touched:
                continue
            assert torch.equal(before["model"][name], after["model"][name]), (k, name)
            assert (index in opt_before) == (index in opt_after), (k, name)
            for key, value in opt_before.get(index, {}).items():
                other = opt_after[index][key]
                assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (k, name, key)
            if index in opt_before and opt_before[index]["exp_avg"].abs().sum() > 0:
                stale_momentum += 1
        moved = [n for n in touched if not torch.equal(before["model"][n], after["model"][n])]
        assert moved, k
    assert stale_momentum > 0  # some inactive candidate had momentum: the case the guard exists for
