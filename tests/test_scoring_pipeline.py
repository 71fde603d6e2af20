"""Average our checkpoints (supernet and extracted subnet), decode with the average, score the decode.

Two checkpoints of a tiny supernet are written by fairseq's own ``Trainer`` two updates apart, in process
(a ``fairseq-train`` subprocess costs minutes on a loaded machine); then, as a user would:
``fairseq-shiftadd-average-checkpoints`` (its ``main``), ``fairseq-shiftadd-extract-subnet`` on both,
averaging of the two subnet checkpoints, beam search with fairseq's generator on a few validation
sentences, the ``D-`` lines of ``fairseq-generate`` and :func:`fairseq_shiftadd.scoring.score`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest
import sacrebleu
import torch

from fairseq_shiftadd import averaging
from fairseq_shiftadd.extract import extract_checkpoint
from fairseq_shiftadd.scoring import read_generate_output, read_lines, score
from inprocess import decode, train_updates

REPO = Path(__file__).resolve().parents[1]
SENTENCES = 6


def _train_args(data: Path) -> List[str]:
    return [
        str(data), "--user-dir", str(REPO / "fairseq_shiftadd"), "--task", "shiftadd_translation",
        "--arch", "shiftadd_supernet_tiny", "--sharing", "heterogeneous",
        "--criterion", "shiftadd_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--lr", "1e-2", "--max-tokens", "1024", "--seed", "1", "--cpu",
    ]


@pytest.fixture(scope="module")
def supernet_checkpoints(multi30k_en_de: Path, tmp_path_factory: pytest.TempPathFactory) -> List[Path]:
    """``checkpoint_1_1.pt`` and ``checkpoint_1_2.pt``: the supernet after one and after two updates."""
    return train_updates(_train_args(multi30k_en_de), 2, tmp_path_factory.mktemp("supernet_checkpoints"))


def _models(path: Path) -> Dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["model"]


def _check_mean(averaged: Path, inputs: List[Path]) -> None:
    first, second, mean = (_models(p) for p in (*inputs, averaged))
    assert mean.keys() == first.keys()
    moved = 0
    for name, tensor in mean.items():
        torch.testing.assert_close(tensor, (first[name] + second[name]) / 2, rtol=1e-6, atol=1e-7)
        moved += not torch.equal(first[name], second[name])
    assert moved > len(mean) // 2  # the update moved most tensors: the mean is not a copy of an input


def _decode_and_score(checkpoint: Path, data: Path, tmp_path: Path) -> float:
    """Beam 4, length penalty 0.6 on the first validation sentences; written and scored as generate's log."""
    decode(checkpoint, "valid", SENTENCES, tmp_path / "gen.txt")
    hypotheses = read_generate_output(tmp_path / "gen.txt", expected=SENTENCES)
    assert all("\u2581" not in text for text in hypotheses)
    references = read_lines(data.parent / "raw" / "valid.de")[:SENTENCES]
    report = score(hypotheses, references, "de")
    assert report.compound_split and report.sentences == SENTENCES
    assert report.sacrebleu == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    return report.sacrebleu


def test_average_supernet_checkpoints_and_decode(
    supernet_checkpoints: List[Path], multi30k_en_de: Path, tmp_path: Path
) -> None:
    averaged = tmp_path / "averaged.pt"
    averaging.main([
        "--inputs", str(supernet_checkpoints[0].parent), "--num-update-checkpoints", "2", "--output", str(averaged),
    ])
    _check_mean(averaged, supernet_checkpoints)
    _decode_and_score(averaged, multi30k_en_de, tmp_path)


def test_average_extracted_subnet_checkpoints_and_decode(
    supernet_checkpoints: List[Path], multi30k_en_de: Path, tmp_path: Path
) -> None:
    subnets = [tmp_path / f"subnet_{i}.pt" for i in range(2)]
    for supernet, subnet in zip(supernet_checkpoints, subnets):
        extract_checkpoint(supernet, "smallest", subnet)
    averaged = tmp_path / "subnet_averaged.pt"
    averaging.main(["--inputs", *map(str, subnets), "--output", str(averaged)])
    _check_mean(averaged, subnets)
    assert torch.load(averaged, weights_only=False)["cfg"]["model"]["_name"] == "shiftadd_transformer"
    _decode_and_score(averaged, multi30k_en_de, tmp_path)
