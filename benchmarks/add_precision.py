"""Low-precision evaluation of ``iwslt14_de_en`` standalone subnets against their float64 evaluation.

The largest subnet (6 + 6 layers, width 640, FFN 2048) with attention blocks and mult FFNs, with add FFNs,
and with adder mixers (``lightweight_add`` encoder, ``attention+lightweight_add`` decoder), untrained
(seed 0), 1000 words, 4 sentences (``tests/models/conftest.token_batch``'s batch). Printed per dtype: the
largest ``|log p - log p_64|`` and the mean ``KL(p_64 || p)`` per position. ``tests/models/test_precision.py``
asserts bounds on the same quantities.

    python benchmarks/add_precision.py
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from fairseq.data import Dictionary

from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import get_space, largest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from conftest import token_batch  # noqa: E402  (the tests' batch, so both measure the same thing)

VARIANTS = {
    "mult FFNs": (BlockType.ATTENTION, BlockType.ATTENTION, OpKind.MULT),
    "add FFNs": (BlockType.ATTENTION, BlockType.ATTENTION, OpKind.ADD),
    "add mixers": (BlockType.LIGHTWEIGHT_ADD, BlockType.ATTENTION_LIGHTWEIGHT_ADD, OpKind.MULT),
}


def main() -> None:
    dictionary = Dictionary()
    for i in range(1000):
        dictionary.add_symbol(f"w{i}")
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    space = get_space("iwslt14_de_en")
    src, lengths, prev = token_batch(task, seed=0)
    for name, (encoder_block, decoder_block, ffn_op) in VARIANTS.items():
        sub = largest(space, block=encoder_block, decoder_block=decoder_block, ffn_op=ffn_op)
        torch.manual_seed(0)
        model = ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name), task, space, sub).eval()
        results = {}
        for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
            with torch.no_grad():
                logits, _ = model.to(dtype)(src, lengths, prev)
            results[dtype] = F.log_softmax(logits.double(), dim=-1)
        reference = results.pop(torch.float64)
        cells = []
        for dtype, log_probs in results.items():
            error = (log_probs - reference).abs().max().item()
            kl = (reference.exp() * (reference - log_probs)).sum(-1).mean().item()
            cells.append(f"{str(dtype).split('.')[-1]} {error:.2g} / {kl:.2g}")
        print(f"{name}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
