"""Checkpoint averaging for fairseq checkpoints (ours and fairseq's own models).

``fairseq-shiftadd-average-checkpoints --inputs a.pt b.pt ... --output avg.pt`` or
``--inputs DIR --num-update-checkpoints N`` (the N newest ``checkpoint_*_<update>.pt``) or
``--num-epoch-checkpoints N`` (the N newest ``checkpoint<epoch>.pt``). The first checkpoint's
configuration and extra state are kept; the model parameters are the element-wise mean, computed
in float64 and cast back to each tensor's dtype. Inputs must hold the same parameter names and
shapes (after renaming the weight-slot keys of checkpoints written before today's names,
:func:`~fairseq_shiftadd.models.legacy_keys.upgrade_legacy_keys`, so old and new checkpoints of one run average
together): anything else is an error that names the offending file and parameter. ``--output`` may not be
one of the inputs; an existing output is replaced only with ``--force``; it is written atomically.
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from .cli_errors import InputError, add_debug_flag, run_main
from .compat import load_checkpoint_file
from .atomic import save_torch
from .models.legacy_keys import upgrade_legacy_keys
from .outputs import check_output

logger = logging.getLogger(__name__)

__all__ = ["average_checkpoints", "last_checkpoints", "main"]


def _load(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = load_checkpoint_file(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise InputError(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    return state


def average_checkpoints(paths: Sequence[Path]) -> dict:
    """Average the ``model`` entries of fairseq checkpoints; returns the first checkpoint with them."""
    if not paths:
        raise ValueError("inputs: no checkpoint to average")
    first = _load(Path(paths[0]))
    reference = upgrade_legacy_keys(first["model"])
    sums: Dict[str, torch.Tensor] = collections.OrderedDict(
        (name, tensor.detach().to(torch.float64).clone()) for name, tensor in reference.items()
    )
    for path in paths[1:]:
        model = upgrade_legacy_keys(_load(Path(path))["model"])
        if model.keys() != reference.keys():
            diff = sorted(set(model) ^ set(reference))[:5]
            raise ValueError(f"{path} has different parameters than {paths[0]} (e.g. {diff})")
        for name, tensor in model.items():
            if tensor.shape != reference[name].shape:
                raise ValueError(
                    f"{path}: parameter {name} has shape {tuple(tensor.shape)}, "
                    f"{paths[0]} has {tuple(reference[name].shape)}"
                )
            sums[name] += tensor.to(torch.float64)
    first["model"] = collections.OrderedDict(
        (name, (total / len(paths)).to(reference[name].dtype)) for name, total in sums.items()
    )
    return first


def last_checkpoints(directory: Path, count: int, by_update: bool) -> List[Path]:
    """The ``count`` newest epoch (``checkpoint12.pt``) or update (``checkpoint_3_5000.pt``) checkpoints."""
    pattern = re.compile(r"checkpoint_\d+_(\d+)\.pt$" if by_update else r"checkpoint(\d+)\.pt$")
    found = sorted(
        ((int(m.group(1)), directory / name) for name in os.listdir(directory) if (m := pattern.fullmatch(name))),
        reverse=True,
    )
    if len(found) < count:
        kind = "update" if by_update else "epoch"
        raise ValueError(f"{directory}: asked for {count} {kind} checkpoints, found {len(found)}")
    return [path for _, path in found[:count]]


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Average the parameters of fairseq checkpoints.")
    parser.add_argument("--inputs", nargs="+", required=True, type=Path,
                        help="checkpoint files, or one directory with --num-*-checkpoints")
    parser.add_argument("--output", required=True, type=Path, help="where to write the average")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--num-epoch-checkpoints", type=int, help="average the N newest epoch checkpoints")
    group.add_argument("--num-update-checkpoints", type=int, help="average the N newest update checkpoints")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    count = args.num_epoch_checkpoints or args.num_update_checkpoints
    if count is not None:
        if len(args.inputs) != 1 or not args.inputs[0].is_dir():
            parser.error("--num-*-checkpoints needs exactly one directory in --inputs")
        paths = last_checkpoints(args.inputs[0], count, by_update=args.num_update_checkpoints is not None)
    else:
        paths = list(args.inputs)
    check_output(args.output, paths, args.force)
    averaged = average_checkpoints(paths)
    save_torch(averaged, args.output)
    logger.info("averaged %d checkpoints into %s", len(paths), args.output)


main = run_main(_main, "fairseq-shiftadd-average-checkpoints")

if __name__ == "__main__":
    main()
