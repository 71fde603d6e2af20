"""Parameters and energy of an all-``attention+lightweight_conv`` wmt14_en_de net: this project's block details vs
the original's (two-branch Q/K/V 512, kernel rows 16 / 4).

    python benchmarks/block_details_cost.py

Costed with the default :class:`~fairseq_shiftadd.cost.Workload` (30 + 30 tokens, beam 1, 32 bits, 32,000 words,
streaming accounting).
"""
from __future__ import annotations

import dataclasses

from fairseq_shiftadd.cost import CostModel
from fairseq_shiftadd.ops.kinds import BlockType
from fairseq_shiftadd.space import get_space, largest

ORIGINAL = dict(two_branch_qkv_dim=512, lightweight_kernel_heads=16, two_branch_kernel_heads=4)


def main() -> None:
    ours = get_space("wmt14_en_de")
    spaces = {
        "default (Q/K/V 256, kernel rows = heads)": ours,
        "original (Q/K/V 512, rows 16 / 4)": dataclasses.replace(ours, **ORIGINAL),
    }
    print("| embed | block details | parameters (M) | energy (mJ) |")
    print("|---|---|---|---|")
    for dim in (1024, 512):
        sub = largest(ours, block=BlockType.ATTENTION_LIGHTWEIGHT_CONV)
        sub = dataclasses.replace(sub, encoder_embed_dim=dim, decoder_embed_dim=dim)
        for name, space in spaces.items():
            metrics = CostModel(space).metrics(sub)
            print(f"| {dim} | {name} | {metrics['params'] / 1e6:.2f} | {metrics['energy_mj']:.1f} |")


if __name__ == "__main__":
    main()
