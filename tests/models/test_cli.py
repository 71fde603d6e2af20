"""``fairseq-train --user-dir fairseq_shiftadd`` with the supernet and a standalone subnet, on real Multi30k data."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SUBNET = (
    '{"encoder_embed_dim": 64, "decoder_embed_dim": 64, '
    '"encoder": [{"block": "attention+lightweight_add", "ffn_dim": 256, "num_heads": 2, "ffn_op": "add"}, '
    '{"block": "lightweight_shiftadd", "ffn_dim": 256, "num_heads": 2, "ffn_op": "shift"}], '
    '"decoder": [{"block": "attention+lightweight_shiftadd", "ffn_dim": 256, "num_heads": 2, "ffn_op": "add", '
    '"cross_heads": 2, "enc_dec_span": 1}]}'
)


def _train(data: Path, save_dir: Path, *model_args: str) -> str:
    cmd = [
        shutil.which("fairseq-train"), str(data), "--user-dir", "fairseq_shiftadd", *model_args,
        "--task", "translation", "--optimizer", "adam", "--lr", "1e-3", "--criterion", "label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", "--max-tokens", "1024", "--max-update", "3", "--log-format", "simple",
        "--log-interval", "1", "--save-dir", str(save_dir), "--num-workers", "0", "--disable-validation",
        "--no-epoch-checkpoints",
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["supernet", "standalone"])
def test_fairseq_train_runs(multi30k_en_de: Path, tmp_path: Path, kind: str):
    if kind == "supernet":
        model_args = ("--arch", "shiftadd_supernet_tiny", "--sharing", "heterogeneous")
    else:  # the subnet given as a file is saved inline: the checkpoint is self-contained
        (tmp_path / "subnet.json").write_text(SUBNET)
        model_args = ("--arch", "shiftadd_transformer", "--space", "tiny", "--subnet", str(tmp_path / "subnet.json"))
    log = _train(multi30k_en_de, tmp_path, *model_args)
    losses = [float(x) for x in re.findall(r"train_inner \| .* loss=([\d.]+)", log)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), log[-2000:]
    saved = torch.load(tmp_path / "checkpoint_last.pt", weights_only=False)["cfg"]["model"]
    if kind == "standalone":
        assert json.loads(saved["subnet"]) == json.loads(SUBNET)
        # the dropout reference widths are resolved (0 -> the tiny space's largest, 128) and saved
        assert (saved["encoder_dropout_width"], saved["decoder_dropout_width"]) == (128, 128)
