"""``fairseq-shiftadd-cost``: the cost report of one subnet (energy, analytical latency, counts, traffic).

    fairseq-shiftadd-cost --space wmt14_en_de --subnet largest
    fairseq-shiftadd-cost --space tiny --subnet best.yaml --profile 45nm --bits 8 --beam 4 --json
"""
from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from ..cli_errors import add_debug_flag, run_main
from ..space import get_space, resolve_subnet
from .model import CostModel
from .profile import shipped_profiles
from .workload import BIT_WIDTHS, Workload

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairseq-shiftadd-cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="wmt14_en_de", help="search space name")
    parser.add_argument("--subnet", default="largest", help="largest | smallest | FILE.json | FILE.yaml | inline JSON")
    parser.add_argument(
        "--profile", default="45nm", help=f"shipped profile ({', '.join(shipped_profiles())}) or a YAML path"
    )
    parser.add_argument("--bits", type=int, default=32, choices=BIT_WIDTHS, help="operand width")
    parser.add_argument("--src-len", type=int, default=30, help="source tokens")
    parser.add_argument("--tgt-len", type=int, default=30, help="decoding steps")
    parser.add_argument("--beam", type=int, default=1, help="beam size")
    parser.add_argument("--vocab-size", type=int, default=Workload.vocab_size, help="target vocabulary")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON instead of the table")
    add_debug_flag(parser)
    return parser


def _main(argv: Optional[Sequence[str]] = None) -> None:
    args = _parser().parse_args(argv)
    space = get_space(args.space)
    sub = resolve_subnet(args.subnet, space)
    workload = Workload(
        src_len=args.src_len, tgt_len=args.tgt_len, beam=args.beam, bits=args.bits, vocab_size=args.vocab_size
    )
    report = CostModel(space, profile=args.profile, workload=workload).report(sub)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())


main = run_main(_main, "fairseq-shiftadd-cost")

if __name__ == "__main__":
    main()
