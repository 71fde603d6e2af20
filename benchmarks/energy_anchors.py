"""Energy anchors: Transformer-base and Transformer-big under both accountings, next to the paper's numbers.

Both models are ``wmt14_en_de`` subnets (Q/K/V width 512, as the original simulated them: docs/method.md section 5;
:mod:`fairseq_shiftadd.cost.anchors`), 45 nm profile, a 30-token source and 30 target tokens. The ``original``
accounting (one teacher-forced pass, weights fetched once per sentence, no embedding or output projection) is
the one the paper's 69.41 / 214.34 mJ were simulated with; ``streaming`` (step-by-step decoding with the beam,
weights streamed at every step, output projection and embedding charged; 32,000-word vocabulary) is this
project's default. The columns split the total so the difference can be read off: compute only, compute +
on-chip data movement, DRAM traffic, the output projection, and the share of the energy that no per-layer gene
of the ``wmt14_en_de`` space can change at this size (:meth:`~fairseq_shiftadd.cost.CostModel.fixed_energy_mj`).

    python benchmarks/energy_anchors.py [--profile 45nm] [--vocab 32000]
"""
from __future__ import annotations

import argparse
from typing import Sequence

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.cost.anchors import ANCHOR_SHAPES, ANCHOR_SPACE, REPORTED_ENERGY_MJ, anchor_subnet
from fairseq_shiftadd.cost.energy import PJ_PER_MJ
from fairseq_shiftadd.space import get_space

WORKLOADS = (("original", 32, 1), ("original", 8, 1), ("streaming", 32, 1), ("streaming", 32, 4),
             ("streaming", 8, 4))
"""(accounting, bits, beam) rows per model."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="45nm", help="hardware profile (default: %(default)s)")
    parser.add_argument("--vocab", type=int, default=32000,
                        help="joined vocabulary of the streaming accounting (default: %(default)s)")
    args = parser.parse_args(argv)
    space = get_space(ANCHOR_SPACE)
    print("| model | accounting | bits | beam | energy mJ | paper mJ | ratio to paper | compute "
          "| + on-chip (GB, NoC, RF) | DRAM | output proj. | fixed share | mults (G) | params (M) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ANCHOR_SHAPES:
        sub = anchor_subnet(name)
        for accounting, bits, beam in WORKLOADS:
            workload = Workload(beam=beam, bits=bits, vocab_size=args.vocab, accounting=accounting)
            report = CostModel(space, profile=args.profile, workload=workload).report(sub)
            by = {k: v / PJ_PER_MJ for k, v in report.energy_pj_by_component.items()}
            compute = by["mult"] + by["add"] + by["shift"]
            on_chip = compute + by["global_buffer"] + by["noc"] + by["rf"]
            out = report.energy_mj_by_layer.get("output_projection", 0.0)
            metrics = report.metrics()
            paper = REPORTED_ENERGY_MJ[name] if bits == 32 else None  # the paper reports these models at 32 bits
            versus = "n/a | n/a" if paper is None else f"{paper} | {report.energy_mj / paper:.3f}"
            print(
                f"| {name} | {accounting} | {bits} | {beam} | {report.energy_mj:.2f} | {versus} "
                f"| {compute:.2f} | {on_chip:.2f} "
                f"| {by['dram']:.2f} | {out:.2f} | {100 * report.fixed_energy_share:.0f} % "
                f"| {metrics['mults'] / 1e9:.2f} | {metrics['params'] / 1e6:.1f} |"
            )


if __name__ == "__main__":
    main()
