"""Parameter counts of a supernet per weight-sharing mode (and of its largest / smallest subnets).

    python benchmarks/param_counts.py [--space wmt14_en_de] [--vocab 32000]
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Sequence

import torch
from fairseq.data import Dictionary

from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig
from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.ops.hetero import SharingMode
from fairseq_shiftadd.space import get_space, largest, smallest


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="wmt14_en_de")
    parser.add_argument("--vocab", type=int, default=32000, help="joined dictionary size")
    args = parser.parse_args(argv)
    space = get_space(args.space)
    dictionary = Dictionary()
    for i in range(args.vocab - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    print(f"| {args.space} ({args.vocab} words) | parameters |")
    print("|---|---|")
    for mode in SharingMode:
        supernet = ShiftAddSupernet.from_space(SupernetConfig(space=space.name, sharing=mode.value), task, space)
        print(f"| supernet, sharing `{mode.value}` | {_count(supernet):,} |")
        del supernet
    for name, sub in (("largest", largest(space)), ("smallest", smallest(space))):
        model = ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name), task, space, sub)
        print(f"| standalone {name} subnet | {_count(model):,} |")


if __name__ == "__main__":
    main()
