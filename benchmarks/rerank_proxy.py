"""Does a short retraining rank subnets as the full one does? The evidence behind ``fairseq-shiftadd-rerank``.

Reads finished :mod:`ranking` runs, whose subnets were each retrained from scratch with the same recipe and budget
(each ``NN/train.log`` holds the validation loss after every epoch), and prints, for every number of updates at
which all of them were validated, Kendall's tau-b of that early validation loss against the final retrained loss
and validation BLEU (:func:`ranking.ranking_taus`), under the supernet's own tau (inherited loss) over the same
subnets. Several runs (``ranking.py --seed``) are pooled into one panel.

    python benchmarks/rerank_proxy.py work/ranking work/ranking2
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ranking import ranking_taus
from supernet_recipes import read_retrained

_VALID = re.compile(r"valid on 'valid' subset \| loss ([0-9.]+) .*?num_updates (\d+)")


def validation_losses(train_log: Path) -> Dict[int, float]:
    """``{updates: validation loss}`` of every validation in a ``fairseq-train --log-format simple`` log."""
    return {int(m.group(2)): float(m.group(1)) for m in _VALID.finditer(train_log.read_text())}


def proxy_taus(ranking_dirs: Sequence[Path]) -> List[Dict[str, float]]:
    """One row per budget: ``updates``, ``n``, ``tau_loss``, ``tau_bleu`` of the validation loss after ``updates``
    (``updates = 0``: the supernet's inherited loss), over the subnets of all ``ranking_dirs``.

    Raises:
        ValueError: a run is unfinished or a subnet's ``train.log`` is missing.
    """
    rows = []
    for folder in ranking_dirs:
        for row in read_retrained(folder):
            log = folder / f"{int(row['index']):02d}" / "train.log"
            if not log.is_file():
                raise ValueError(f"{log}: no such file")
            rows.append({**row, "early": validation_losses(log)})
    budgets = sorted(set.intersection(*(set(r["early"]) for r in rows)))
    out = [{"updates": 0, **ranking_taus(rows)}]
    for updates in budgets:
        out.append({"updates": updates, **ranking_taus([{**r, "inherited_loss": r["early"][updates]} for r in rows])})
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ranking_dirs", nargs="+", type=Path, help="finished benchmarks/ranking.py --out folders")
    args = parser.parse_args(argv)
    try:
        table = proxy_taus(args.ranking_dirs)
    except ValueError as err:
        sys.exit(f"rerank_proxy.py: error: {err}")
    print("| ranked by | subnets | tau vs retrained loss | tau vs retrained BLEU |")
    print("|---|---:|---:|---:|")
    for row in table:
        label = ("supernet (inherited loss)" if row["updates"] == 0
                 else f"validation loss after {row['updates']} updates")
        print(f"| {label} | {row['n']} | {row['tau_loss']:+.2f} | {row['tau_bleu']:+.2f} |")


if __name__ == "__main__":
    main()
