"""Parameters and energy of an all-``attention+lightweight_conv`` wmt14_en_de net under the two block-detail presets:
``original`` (the default: two-branch Q/K/V 512, kernel rows 16 / 4) and ``compact`` (Q/K/V 256, rows = heads).

    python benchmarks/block_details_cost.py

Costed with the default :class:`~fairseq_shiftadd.cost.Workload` (30 + 30 tokens, beam 1, 32 bits, 32,000 words,
streaming accounting).
"""
from __future__ import annotations

import dataclasses

from fairseq_shiftadd.cost import CostModel
from fairseq_shiftadd.ops.kinds import BlockType
from fairseq_shiftadd.space import BlockDetails, get_space, largest

LABELS = {BlockDetails.ORIGINAL: "original, the default (Q/K/V 512, rows 16 / 4)",
          BlockDetails.COMPACT: "compact (Q/K/V 256, kernel rows = heads)"}


def main() -> None:
    space = get_space("wmt14_en_de")
    print("| embed | block details | parameters (M) | energy (mJ) |")
    print("|---|---|---|---|")
    for dim in (1024, 512):
        sub = largest(space, block=BlockType.ATTENTION_LIGHTWEIGHT_CONV)
        sub = dataclasses.replace(sub, encoder_embed_dim=dim, decoder_embed_dim=dim)
        for details, label in LABELS.items():
            metrics = CostModel(dataclasses.replace(space, block_details=details)).metrics(sub)
            print(f"| {dim} | {label} | {metrics['params'] / 1e6:.2f} | {metrics['energy_mj']:.1f} |")


if __name__ == "__main__":
    main()
