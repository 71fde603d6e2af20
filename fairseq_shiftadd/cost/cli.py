"""``fairseq-shiftadd-cost``: the cost report of one subnet (energy, analytical latency, counts, traffic).

    fairseq-shiftadd-cost --space wmt14_en_de --subnet largest [--accounting original]
    fairseq-shiftadd-cost --space tiny --subnet best.yaml --profile 45nm --bits 8 --beam 4 --json

A subnet file written by the search (``best.yaml``, ``front/NN.yaml``) records the space it was searched in (name,
block details, hash) and the workload, accounting, vocabulary size and profile its metrics were computed with; they
are this command's defaults for that file, so it reproduces the search's numbers without flags. Workload flags
given on the command line override the record; a ``--space`` or ``--block-details`` that contradicts it is refused
(as is a space whose definition changed since the search).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..cli_errors import add_debug_flag, run_main
from ..cli_types import positive_int
from ..space import BlockDetails, SearchSpace, get_space, read_space_record, resolve_subnet
from .model import CostModel
from .profile import load_profile, shipped_profiles
from .workload import ACCOUNTINGS, Workload, read_workload_header

__all__ = ["shipped_bit_widths", "resolve_space", "resolve_settings", "main"]


DEFAULT_SPACE = "wmt14_en_de"
DEFAULT_PROFILE = "45nm"
_WORKLOAD_FLAGS = ("accounting", "src_len", "tgt_len", "beam", "bits", "vocab_size")
"""Options that set a :class:`Workload` field of the same name (default: the subnet file's record)."""


def shipped_bit_widths() -> Tuple[int, ...]:
    """The operand widths some shipped profile has unit energies for (``--bits`` choices)."""
    return tuple(sorted({b for name in shipped_profiles() for b in load_profile(name).bit_widths}, reverse=True))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairseq-shiftadd-cost", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[2])
    recorded = "default: as recorded in a subnet file written by the search, else"
    defaults = Workload()
    parser.add_argument("--space", default=None, help=f"search space name ({recorded} {DEFAULT_SPACE})")
    parser.add_argument("--block-details", choices=[d.value for d in BlockDetails], default=None,
                        help="the block details the model was built with, as its --block-details (compact for "
                             f"checkpoints from before the option; {recorded} {BlockDetails.ORIGINAL.value})")
    parser.add_argument("--subnet", default="largest",
                        help="largest | smallest | FILE.json | FILE.yaml | inline JSON (default: %(default)s)")
    parser.add_argument("--profile", default=None,
                        help=f"shipped profile ({', '.join(shipped_profiles())}) or a YAML path ({recorded} "
                             f"{DEFAULT_PROFILE})")
    parser.add_argument("--accounting", choices=ACCOUNTINGS, default=None,
                        help="streaming: step-by-step decoding with the beam, weights streamed at every step, "
                             "embedding and output projection charged; original: the paper's one teacher-forced "
                             f"pass, weights once per sentence, no vocabulary ({recorded} {defaults.accounting})")
    parser.add_argument("--bits", type=int, default=None, choices=shipped_bit_widths(),
                        help=f"operand width: the widths of the shipped profiles ({recorded} {defaults.bits})")
    parser.add_argument("--src-len", type=positive_int, default=None,
                        help=f"source tokens ({recorded} {defaults.src_len})")
    parser.add_argument("--tgt-len", type=positive_int, default=None,
                        help=f"target tokens: decoding steps, or the original's one pass ({recorded} "
                             f"{defaults.tgt_len})")
    parser.add_argument("--beam", type=positive_int, default=None,
                        help=f"beam size of the streaming accounting; the original needs 1 ({recorded} "
                             f"{defaults.beam})")
    parser.add_argument("--vocab-size", type=positive_int, default=None,
                        help=f"target vocabulary, charged by the streaming accounting ({recorded} "
                             f"{defaults.vocab_size})")
    parser.add_argument("--json", action="store_true",
                        help="print the full report as JSON instead of the table (default: the table)")
    add_debug_flag(parser)
    return parser


def resolve_space(args: argparse.Namespace) -> SearchSpace:
    """The space to cost in: ``--space`` and ``--block-details`` where given, else the subnet file's record
    (:class:`~fairseq_shiftadd.space.SpaceRecord`, with its block-detail overrides), else the defaults. Options
    that contradict the record give another space, which :func:`~fairseq_shiftadd.space.resolve_subnet` refuses.

    Raises:
        ValueError: an unknown space, block details the space does not allow, or an invalid record.
    """
    record = read_space_record(args.subnet)
    recorded = (record.name, record.block_details) if record else (DEFAULT_SPACE, BlockDetails.ORIGINAL.value)
    name, details = args.space or recorded[0], args.block_details or recorded[1]
    if record is not None and (name, details) == recorded:
        return record.space()
    return dataclasses.replace(get_space(name), block_details=BlockDetails(details))


def resolve_settings(args: argparse.Namespace) -> Tuple[Workload, str]:
    """The workload and profile: flags given, else the subnet file's record, else the defaults.

    An explicit ``--accounting original`` without ``--beam`` decodes at beam 1 (the only beam it allows).

    Raises:
        ValueError: an invalid workload, or an invalid record in the subnet file.
    """
    record = None
    if not args.subnet.lstrip().startswith("{") and Path(args.subnet).is_file():
        record = read_workload_header(args.subnet)
    workload, profile = record if record is not None else (Workload(), DEFAULT_PROFILE)
    given = {name: getattr(args, name) for name in _WORKLOAD_FLAGS if getattr(args, name) is not None}
    if given.get("accounting") == "original" and "beam" not in given:
        given["beam"] = 1
    return dataclasses.replace(workload, **given), args.profile or profile


def _main(argv: Optional[Sequence[str]] = None) -> None:
    args = _parser().parse_args(argv)
    space = resolve_space(args)
    sub = resolve_subnet(args.subnet, space)  # refuses a space that contradicts the file's record
    workload, profile = resolve_settings(args)
    report = CostModel(space, profile=profile, workload=workload).report(sub)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())


main = run_main(_main, "fairseq-shiftadd-cost")

if __name__ == "__main__":
    main()
