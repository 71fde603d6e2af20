"""Sanity anchors: energy of Transformer-base and Transformer-big next to the original's reported numbers.

WMT14 En-De shapes with a 32k joined vocabulary, 45 nm profile, 32-bit, a 30-token source and 30 decoding
steps (beam 1 and 4). The plain Transformer is an ``attention`` / ``mult``-FFN subnet with Q/K/V width equal
to the embedding width. Besides the total, the columns split it, so the difference with the original (which
reported 69.41 and 214.34 mJ) can be read off: compute only, compute + on-chip data movement, DRAM traffic,
and the output projection (which the original's FLOPs, 2.68G / 10.6G, leave out).

    python benchmarks/energy_anchors.py [--profile 45nm] [--vocab 32000]
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence, Tuple

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.cost.energy import PJ_PER_MJ
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import LayerConfig, SearchSpace, SubnetConfig, get_space

REPORTED_MJ = {"Transformer-base": 69.41, "Transformer-big": 214.34}  # method.md section 7
SHAPES = {"Transformer-base": (512, 2048, 8), "Transformer-big": (1024, 4096, 16)}  # embed, FFN, heads


def plain_transformer(embed: int, ffn: int, heads: int, layers: int = 6) -> Tuple[SearchSpace, SubnetConfig]:
    """A one-point space holding the plain Transformer (Q/K/V width = embed, attention, mult FFN)."""
    space = dataclasses.replace(
        get_space("hat_wmt14"), name=f"transformer_{embed}", encoder_embed_dims=(embed,), decoder_embed_dims=(embed,),
        encoder_ffn_dims=(ffn,), decoder_ffn_dims=(ffn,), encoder_heads=(heads,), decoder_self_heads=(heads,),
        decoder_cross_heads=(heads,), decoder_layers=(layers,), enc_dec_spans=(-1,), qkv_dim=embed,
    )
    enc = (LayerConfig(BlockType.ATTENTION, ffn, heads, OpKind.MULT),) * layers
    dec = (LayerConfig(BlockType.ATTENTION, ffn, heads, OpKind.MULT, cross_heads=heads, enc_dec_span=-1),) * layers
    return space, SubnetConfig(embed, embed, enc, dec)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="45nm")
    parser.add_argument("--vocab", type=int, default=32000)
    args = parser.parse_args(argv)
    print("| model | beam | energy mJ | reported mJ | compute | + on-chip (GB, NoC, RF) | DRAM | output proj. "
          "| w/o output proj. | mults (G) | params (M) | non-embedding params (M) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (embed, ffn, heads) in SHAPES.items():
        space, sub = plain_transformer(embed, ffn, heads)
        for beam in (1, 4):
            workload = Workload(src_len=30, tgt_len=30, beam=beam, bits=32, vocab_size=args.vocab)
            report = CostModel(space, profile=args.profile, workload=workload).report(sub)
            by = {k: v / PJ_PER_MJ for k, v in report.energy_pj_by_component.items()}
            compute = by["mult"] + by["add"] + by["shift"]
            on_chip = compute + by["global_buffer"] + by["noc"] + by["rf"]
            out = report.energy_mj_by_layer["output_projection"]
            metrics = report.metrics()
            print(
                f"| {name} | {beam} | {report.energy_mj:.2f} | {REPORTED_MJ[name]} | {compute:.2f} | {on_chip:.2f} "
                f"| {by['dram']:.2f} | {out:.2f} | {report.energy_mj - out:.2f} | {metrics['mults'] / 1e9:.2f} "
                f"| {metrics['params'] / 1e6:.1f} | {(metrics['params'] - args.vocab * embed) / 1e6:.1f} |"
            )


if __name__ == "__main__":
    main()
