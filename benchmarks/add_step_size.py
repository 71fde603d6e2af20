"""Step size of an add candidate on a weight it shares with a mult candidate, as fairseq trains it.

The ``tiny`` supernet with ``--sharing shared`` runs the largest subnet once with add FFNs and once with mult FFNs on
the same random batch (eval mode: no dropout); the summed cross-entropy is back-propagated and the gradients divided by
the token count (fairseq's trainer). Printed: the norm of the shared FFN weights' gradient (encoder layer 0, ``fc1`` and
``fc2``) under the add candidate divided by that under the mult candidate, for two batch sizes. Under AdderNet's
adaptive scaling (fixed norm per backward) this ratio falls with the token count; under the models' rule
(:data:`~fairseq_shiftadd.models.sharing.ADD_GRAD_NORM`, a mult layer's norm) it does not.

    python benchmarks/add_step_size.py [--tokens-per-sentence 64] [--sentences 16 64]
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import List, Sequence

import torch
import torch.nn.functional as F
from fairseq.data import Dictionary

from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.space import get_space, largest


def shared_ffn_grad_norms(model: ShiftAddSupernet, op: OpKind, sentences: int, length: int) -> List[float]:
    """Gradient norms of encoder layer 0's shared ``fc1``, ``fc2`` weights after a fairseq-normalised backward."""
    vocab = len(model.encoder.dictionary)
    src = torch.randint(4, vocab, (sentences, length), generator=torch.Generator().manual_seed(0))
    prev = torch.randint(4, vocab, (sentences, length), generator=torch.Generator().manual_seed(1))
    model.set_subnet(largest(model.space, ffn_op=op))
    model.zero_grad(set_to_none=True)
    logits = model(src, torch.full((sentences,), length), prev)[0]
    F.cross_entropy(logits.flatten(0, 1), prev.roll(-1, 1).flatten(), reduction="sum").backward()
    ffn = model.encoder.layers[0].ffn
    return [float(slot.weight["shared"].grad.norm()) / (sentences * length) for slot in (ffn.fc1, ffn.fc2)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens-per-sentence", type=int, default=64)
    parser.add_argument("--sentences", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args(argv)
    dictionary = Dictionary()
    for i in range(1000):
        dictionary.add_symbol(f"w{i}")
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    space = get_space("tiny")
    torch.manual_seed(0)
    model = ShiftAddSupernet.from_space(SupernetConfig(space="tiny", sharing="shared"), task, space)
    for sentences in args.sentences:
        mult = shared_ffn_grad_norms(model.eval(), OpKind.MULT, sentences, args.tokens_per_sentence)
        add = shared_ffn_grad_norms(model, OpKind.ADD, sentences, args.tokens_per_sentence)
        ratios = ", ".join(f"{name} {a / m:.3f}" for name, a, m in zip(("fc1", "fc2"), add, mult))
        print(f"{sentences * args.tokens_per_sentence} tokens: add / mult gradient norm: {ratios}")


if __name__ == "__main__":
    main()
