"""A 2-rank CPU ``fairseq-train`` (gloo) of a supernet with add candidates, whose rank count does not divide
its batch count: the rank that runs out of batches trains on fairseq's dummy batch with the loss multiplied
by 0, i.e. an exactly zero output gradient into every adder layer (which once made their weight gradients
NaN and stopped training with ``FloatingPointError: gradients are Nan/Inf``)."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SENTENCES = 21  # batches of one sentence: 11 on rank 0, 10 + one dummy batch on rank 1
SUBNET = (
    '{"encoder_embed_dim": 128, "decoder_embed_dim": 128, '
    '"encoder": [{"block": "attention+lightweight_add", "ffn_dim": 256, "num_heads": 2, "ffn_op": "add"}, '
    '{"block": "lightweight_add", "ffn_dim": 256, "num_heads": 2, "ffn_op": "add"}], '
    '"decoder": [{"block": "attention+lightweight_add", "ffn_dim": 256, "num_heads": 2, "ffn_op": "add", '
    '"cross_heads": 2, "enc_dec_span": -1}]}'
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _odd_subset(data_bin: Path, out: Path) -> Path:
    """The first ``SENTENCES`` training pairs of the prepared fixture, binarised with its dictionary."""
    pieces = data_bin.parent / "spm-text"
    for lang in ("en", "de"):
        lines = (pieces / f"train.{lang}").read_text().splitlines()[:SENTENCES]
        (out / f"train.{lang}").write_text("\n".join(lines) + "\n")
    subprocess.run(
        [shutil.which("fairseq-preprocess"), "--source-lang", "en", "--target-lang", "de", "--trainpref",
         str(out / "train"), "--srcdict", str(data_bin / "dict.en.txt"), "--joined-dictionary", "--destdir",
         str(out / "bin"), "--workers", "1"],
        check=True, capture_output=True, cwd=REPO,
    )
    return out / "bin"


@pytest.mark.slow
def test_two_gloo_ranks_with_an_uneven_batch_count_finish(multi30k_en_de: Path, tmp_path: Path):
    data = _odd_subset(multi30k_en_de, tmp_path)
    init = f"tcp://127.0.0.1:{_free_port()}"
    common = [
        shutil.which("fairseq-train"), str(data), "--user-dir", "fairseq_shiftadd", "--task", "shiftadd_translation",
        "--arch", "shiftadd_supernet_tiny", "--sharing", "heterogeneous", "--subnet", SUBNET,
        "--criterion", "shiftadd_label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--optimizer", "adam",
        "--lr", "1e-3", "--batch-size", "1", "--required-batch-size-multiple", "1", "--max-epoch", "1", "--cpu",
        "--distributed-backend", "gloo", "--distributed-world-size", "2", "--distributed-init-method", init,
        "--distributed-no-spawn", "--ddp-backend", "legacy_ddp", "--no-save", "--disable-validation",
        "--num-workers", "0", "--log-format", "simple", "--log-interval", "1", "--save-dir", str(tmp_path / "ckpt"),
    ]
    ranks = [
        subprocess.Popen([*common, "--distributed-rank", str(rank)], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]
    logs = [rank.communicate(timeout=600)[0] for rank in ranks]
    for rank, log in zip(ranks, logs):
        assert rank.returncode == 0, log[-3000:]
    updates = [int(n) for n in re.findall(r"\| train \| epoch 001 .*num_updates (\d+)", logs[0])]
    assert updates == [(SENTENCES + 1) // 2], logs[0][-2000:]
    assert "nan" not in re.findall(r"\| train \| .*", logs[0])[0].lower()
