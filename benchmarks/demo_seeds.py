"""Mean and spread over seeds of the CPU demo's results, and the issue-9 targets checked on the means.

Reads ``report/results.json`` (written by :mod:`fairseq_shiftadd.reports.demo`) of each run folder given, e.g. the
three of ``benchmarks/demo_seeds.sh``, and with its ``RETRAIN_OFFSETS`` also each seed's runs whose three models were
trained again with another seed (every run weighs the same, so each seed does when each has as many runs). It
reports per model (hybrid, attention_only, baseline) the mean, the sample standard deviation and the range of its
test sacreBLEU, tokenized BLEU and energy under both accountings; then the targets, each with its margin:

* the hybrid's mean sacreBLEU >= the attention-only winner's (same supernet, same energy constraint);
* the hybrid's mean sacreBLEU >= the baseline's - 0.5;
* the hybrid's mean energy under the original accounting >= 30 % below the baseline's.

    python benchmarks/demo_seeds.py work/demo_seeds/seed1 work/demo_seeds/seed2 work/demo_seeds/seed3 \\
        --out work/demo_seeds/summary.md
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

FIELDS = ("sacrebleu", "tokenized_bleu", "energy_original_mj", "energy_streaming_mj")
"""The per-model numbers aggregated (keys of a results.json row)."""
MODELS = ("hybrid", "attention_only", "baseline")


def read_runs(folders: Sequence[Path]) -> List[Dict[str, Dict[str, float]]]:
    """Per run folder: model name -> its results.json row.

    Raises:
        ValueError: a folder without ``report/results.json``, or without one of :data:`MODELS`.
    """
    runs = []
    for folder in folders:
        path = Path(folder) / "report" / "results.json"
        if not path.is_file():
            raise ValueError(f"{folder}: no report/results.json (did scripts/demo.sh finish there?)")
        rows = {row["name"]: row for row in json.loads(path.read_text())}
        missing = [m for m in MODELS if m not in rows]
        if missing:
            raise ValueError(f"{path}: no row for model(s) {missing} (has {sorted(rows)})")
        runs.append(rows)
    return runs


def aggregate(runs: Sequence[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """model -> field -> ``{"mean", "std", "min", "max", "n"}`` (``std``: sample standard deviation, 0 for one run)."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for model in MODELS:
        out[model] = {}
        for field in FIELDS:
            values = [float(run[model][field]) for run in runs]
            out[model][field] = {"mean": statistics.fmean(values),
                                 "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                 "min": min(values), "max": max(values), "n": len(values)}
    return out


def targets(stats: Dict[str, Dict[str, Dict[str, float]]]) -> List[Dict[str, object]]:
    """The three targets on the means: ``{"target", "margin", "met"}`` (margin > = 0 when met)."""
    bleu = {m: stats[m]["sacrebleu"]["mean"] for m in MODELS}
    energy = {m: stats[m]["energy_original_mj"]["mean"] for m in MODELS}
    rows = [
        ("hybrid sacreBLEU >= attention-only winner's", bleu["hybrid"] - bleu["attention_only"]),
        ("hybrid sacreBLEU >= baseline's - 0.5", bleu["hybrid"] - (bleu["baseline"] - 0.5)),
        ("hybrid energy (original) <= 0.7 x baseline's, mJ", 0.7 * energy["baseline"] - energy["hybrid"]),
    ]
    return [{"target": name, "margin": margin, "met": margin >= 0} for name, margin in rows]


def per_run_table(names: Sequence[str], runs: Sequence[Dict[str, Dict[str, float]]]) -> List[str]:
    """One markdown row per run: each model's sacreBLEU and original-accounting energy, and whether the hybrid
    search returned the attention-only winner itself (the same subnet: no hybrid beat it by the search's fitness)."""
    lines = ["| run | " + " | ".join(f"{m} sacreBLEU (mJ)" for m in MODELS) + " | hybrid = attention-only winner |",
             "|---|" + "---|" * (len(MODELS) + 1)]
    for name, run in zip(names, runs):
        cells = [f"{float(run[m]['sacrebleu']):.2f} ({float(run[m]['energy_original_mj']):.2f})" for m in MODELS]
        hybrid, attention = run["hybrid"].get("subnet"), run["attention_only"].get("subnet")
        same = hybrid is not None and hybrid == attention
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if same else 'no'} |")
    return lines


def format_summary(stats: Dict[str, Dict[str, Dict[str, float]]], checks: List[Dict[str, object]],
                   per_run: Sequence[str] = ()) -> str:
    """A markdown table (mean ± sample std [min, max]), the targets with their margins, then ``per_run`` lines."""
    n = stats[MODELS[0]][FIELDS[0]]["n"]
    lines = [f"Over {n} runs (seeds, and with RETRAIN_OFFSETS each seed's trainings with other seeds): "
             "mean ± sample std [min, max].", "",
             "| model | " + " | ".join(FIELDS) + " |", "|---|" + "---|" * len(FIELDS)]
    for model in MODELS:
        cells = [f"{s['mean']:.2f} ± {s['std']:.2f} [{s['min']:.2f}, {s['max']:.2f}]"
                 for s in (stats[model][f] for f in FIELDS)]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "| target | margin | met |", "|---|---|---|"]
    lines += [f"| {c['target']} | {c['margin']:+.2f} | {'yes' if c['met'] else 'NO'} |" for c in checks]
    if per_run:
        lines += ["", *per_run]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="demo WORK folders (each with report/results.json)")
    parser.add_argument("--out", type=Path, default=None, help="write the summary here (.md) and beside it .json")
    args = parser.parse_args(argv)
    try:
        runs = read_runs(args.runs)
    except ValueError as err:
        parser.error(str(err))
    stats = aggregate(runs)
    checks = targets(stats)
    text = format_summary(stats, checks, per_run_table([r.name for r in args.runs], runs))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps({"stats": stats, "targets": checks,
                                                              "runs": [str(r) for r in args.runs]}, indent=2) + "\n")
    print(text, end="")


if __name__ == "__main__":
    main()
