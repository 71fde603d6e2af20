"""The README's operator tables from several runs of ``benchmarks/ops.py``: per row, the median and range of each ratio.

One run of ``ops.py`` on a shared machine is one draw of its noise; the README reports several runs as
``median (least-most)`` of each ratio column (``fwd vs torch``, ``fwd+bwd vs torch``), and optionally one run of
``--reference`` beside them. This script computes that table from the runs' saved outputs, so that every figure of
it comes from a command:

    python benchmarks/ops_summary.py benchmarks/results/ops-cpu-amd-zen4-2026-12-02/run*.txt \\
        --reference benchmarks/results/ops-cpu-amd-zen4-2026-12-02/reference.txt

A row is named by its operator and shape; rows appear in the order of the first run. A run that lacks a row of the
first run (``--only``, a run cut short) is an error, so that a median never silently draws on fewer runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

_COLUMNS = 8  # operator | shape | fwd ms | fwd vs torch | fwd+bwd ms | fwd+bwd vs torch | peak MiB | peak vs torch
_RATIOS = (3, 5)  # the columns summarised: fwd vs torch, fwd+bwd vs torch
RowKey = Tuple[str, str]
Ratios = Tuple[Optional[float], Optional[float]]


def _ratio(text: str) -> Optional[float]:
    """``"0.93x"`` -> 0.93; ``"n/a"`` -> None."""
    return None if text == "n/a" else float(text.rstrip("x"))


def read_run(path: Path) -> Dict[RowKey, Ratios]:
    """The ratio columns of each row of one ``ops.py`` output (its plain table; the Markdown copy is skipped).

    Raises:
        ValueError: the file holds no row (not an ``ops.py`` output), or a ratio is not ``N.NNx`` / ``n/a``.
    """
    rows: Dict[RowKey, Ratios] = {}
    for line in path.read_text().splitlines():
        fields = line.split(" | ")
        if line.startswith("|") or len(fields) != _COLUMNS or fields[0] == "operator":
            continue
        try:
            rows[fields[0], fields[1]] = (_ratio(fields[_RATIOS[0]]), _ratio(fields[_RATIOS[1]]))
        except ValueError:
            raise ValueError(f"{path}: not a ratio in the row {line!r}") from None
    if not rows:
        raise ValueError(f"{path}: no rows of benchmarks/ops.py output")
    return rows


def _spread(values: List[Optional[float]]) -> str:
    """``median (least-most)`` of the values, ``n/a`` where the runs have none; one run: its value alone."""
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    median = f"{statistics.median(present):.2f}x"
    return median if len(present) == 1 else f"{median} ({min(present):.2f}-{max(present):.2f})"


def summarise(runs: Sequence[Dict[RowKey, Ratios]], reference: Optional[Dict[RowKey, Ratios]] = None) -> List[str]:
    """Markdown lines: operator, shape, the median (range) of each ratio over ``runs``, then ``reference``'s ratios.

    Raises:
        ValueError: a run lacks a row of the first run.
    """
    header = ["operator", "shape", "fwd vs torch", "fwd+bwd vs torch"]
    if reference is not None:
        header += ["fwd vs torch, reference", "fwd+bwd vs torch, reference"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in runs[0]:
        missing = [i + 1 for i, run in enumerate(runs) if key not in run]
        if missing:
            raise ValueError(f"row {' '.join(key)!r} is missing from run(s) {missing} (in the order given)")
        cells = [_spread([run[key][column] for run in runs]) for column in range(len(_RATIOS))]
        if reference is not None:
            cells += [_spread([reference.get(key, (None, None))[column]]) for column in range(len(_RATIOS))]
        lines.append("| " + " | ".join([*key, *cells]) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="outputs of benchmarks/ops.py (the same options each)")
    parser.add_argument("--reference", type=Path, help="one output of benchmarks/ops.py --reference")
    args = parser.parse_args(argv)
    try:
        runs = [read_run(path) for path in args.runs]
        reference = None if args.reference is None else read_run(args.reference)
        lines = summarise(runs, reference)
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
