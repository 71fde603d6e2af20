"""A real ``fairseq-train --user-dir fairseq_shiftadd`` run on Multi30k En-De, then generate and average.

Runs the installed fairseq console scripts in subprocesses, from the repository root, as a user would.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

# It trains fairseq's own Transformer (the plugin only imports): slow; the default suite's real end-to-end run
# is tests/test_supernet_task.py (supernet training, export, generate) and checkpoint averaging is also run by
# tests/test_scoring_pipeline.py.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY_TRANSFORMER = (
    "--arch transformer --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 64 --decoder-embed-dim 64 "
    "--encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 --encoder-attention-heads 2 "
    "--decoder-attention-heads 2 --share-all-embeddings --dropout 0.1"
).split()


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    exe = shutil.which(cmd[0])
    assert exe is not None, f"{cmd[0]} is not installed"
    result = subprocess.run([exe, *cmd[1:]], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _logged_losses(log: str) -> list[float]:
    return [float(json.loads(m.group(1))["loss"]) for m in re.finditer(r"\| train_inner \| (\{.*\})", log)]


@pytest.fixture(scope="module")
def trained(multi30k_en_de: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    save_dir = tmp_path_factory.mktemp("checkpoints")
    result = _run([
        "fairseq-train", str(multi30k_en_de), "--user-dir", "fairseq_shiftadd", *TINY_TRANSFORMER,
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "40", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-tokens", "1024", "--max-update", "240", "--save-interval-updates", "120",
        "--keep-interval-updates", "2", "--no-epoch-checkpoints", "--save-dir", str(save_dir),
        "--log-format", "json", "--log-interval", "40", "--seed", "1", "--num-workers", "0",
        "--disable-validation",
    ])
    losses = _logged_losses(result.stderr + result.stdout)
    assert len(losses) >= 5, result.stderr[-2000:]
    (save_dir / "losses.json").write_text(json.dumps(losses))
    return save_dir


def test_train_loss_goes_down(trained: Path) -> None:
    losses = json.loads((trained / "losses.json").read_text())
    assert losses[-1] < losses[0] - 2.0, losses


def test_generate_on_checkpoint(trained: Path, multi30k_en_de: Path) -> None:
    result = _run([
        "fairseq-generate", str(multi30k_en_de), "--user-dir", "fairseq_shiftadd",
        "--path", str(trained / "checkpoint_last.pt"), "--gen-subset", "valid", "--max-sentences", "128",
        "--beam", "2", "--max-len-b", "30", "--remove-bpe", "sentencepiece",
    ])
    hypotheses = [line for line in result.stdout.splitlines() if line.startswith("D-")]
    assert len(hypotheses) >= 1000  # of 1014: generate skipped the 6 sources of 54+ pieces here
    assert re.search(r"BLEU4 = [\d.]+", result.stdout)


def test_average_checkpoints(trained: Path) -> None:
    output = trained / "averaged.pt"
    _run([
        "fairseq-shiftadd-average-checkpoints", "--inputs", str(trained),
        "--num-update-checkpoints", "2", "--output", str(output),
    ])
    load = lambda p: torch.load(p, weights_only=False)["model"]  # noqa: E731
    first, second, mean = load(trained / "checkpoint_1_120.pt"), load(trained / "checkpoint_1_240.pt"), load(output)
    name = "encoder.layers.0.fc1.weight"
    torch.testing.assert_close(mean[name], (first[name] + second[name]) / 2)
