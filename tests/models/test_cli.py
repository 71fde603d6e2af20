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


def test_fairseq_train_runs_a_standalone_subnet(multi30k_en_de: Path, tmp_path: Path):
    """The subnet given as a file is saved inline: the checkpoint is self-contained. (``fairseq-train`` of the
    supernet runs once per session: ``trained_supernet`` in tests/conftest.py, checked by
    tests/test_supernet_task.py.)"""
    (tmp_path / "subnet.json").write_text(SUBNET)
    log = _train(multi30k_en_de, tmp_path, "--arch", "shiftadd_transformer", "--space", "tiny",
                 "--subnet", str(tmp_path / "subnet.json"))
    losses = [float(x) for x in re.findall(r"train_inner \| .* loss=([\d.]+)", log)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), log[-2000:]
    saved = torch.load(tmp_path / "checkpoint_last.pt", weights_only=False)["cfg"]["model"]
    assert json.loads(saved["subnet"]) == json.loads(SUBNET)
    # the dropout reference widths are resolved (0 -> the tiny space's largest, 128) and saved
    assert (saved["encoder_dropout_width"], saved["decoder_dropout_width"]) == (128, 128)


@pytest.mark.slow
def test_quant_bits_trains_extracts_and_generates(multi30k_en_de: Path, tmp_path: Path):
    """``--quant-bits 8``: a tiny QAT supernet trains, ``fairseq-shiftadd-extract-subnet`` carries the width and
    the running ranges over, and ``fairseq-generate`` decodes with the quantised standalone subnet."""
    # the supernet trains SUBNET (its --subnet), so that every running range that SUBNET reads is calibrated
    _train(multi30k_en_de, tmp_path, "--arch", "shiftadd_supernet_tiny", "--quant-bits", "8", "--subnet", SUBNET)
    supernet = torch.load(tmp_path / "checkpoint_last.pt", weights_only=False)
    assert supernet["cfg"]["model"]["quant_bits"] == 8
    assert any(".operand_quant." in key for key in supernet["model"])
    subnet = tmp_path / "subnet.pt"
    extract = subprocess.run(
        [shutil.which("fairseq-shiftadd-extract-subnet"), "--checkpoint", str(tmp_path / "checkpoint_last.pt"),
         "--subnet", SUBNET, "--output", str(subnet), "--data", str(multi30k_en_de)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert extract.returncode == 0, extract.stderr[-3000:]
    state = torch.load(subnet, weights_only=False)
    assert state["cfg"]["model"]["_name"] == "shiftadd_transformer" and state["cfg"]["model"]["quant_bits"] == 8
    ranges = {k: v for k, v in state["model"].items() if k.endswith(".range.initialized")}
    assert ranges and all(bool(v) for v in ranges.values())  # calibrated in training, carried over
    generate = subprocess.run(
        [shutil.which("fairseq-generate"), str(multi30k_en_de), "--user-dir", "fairseq_shiftadd", "--path", str(subnet),
         "--gen-subset", "valid", "--max-sentences", "64", "--beam", "2", "--max-len-b", "10",
         "--max-tokens", "4000", "--num-workers", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert generate.returncode == 0, generate.stderr[-3000:]
    assert sum(line.startswith("H-") for line in generate.stdout.splitlines()) > 900
