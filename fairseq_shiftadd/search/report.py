"""The search's outputs in its output directory (each written atomically):

* ``best.yaml`` (single objective): the best subnet as :class:`~fairseq_shiftadd.space.SubnetConfig` YAML, its
  fitness and metrics in a comment header, with the workload, accounting, vocabulary size and profile the
  metrics were computed with (:func:`~fairseq_shiftadd.cost.workload_header`: ``fairseq-shiftadd-cost
  --subnet best.yaml`` reproduces them) and the space it was searched in: name, block details and hash
  (:class:`~fairseq_shiftadd.space.SpaceRecord`: the cost CLI costs it in that space, and every ``--subnet
  best.yaml`` refuses another); ready for ``--subnet best.yaml``;
* ``front/NN.yaml`` and ``front.csv`` (Pareto mode): the front, sorted by the first Pareto metric (each
  YAML with the same header as ``best.yaml``);
* ``candidates.csv``: every proposed subnet (generation, feasible, fitness, all metrics, subnet JSON);
  infeasible ones were rejected by the constraints and have no fitness (nor the metrics of the stages after
  the first violated constraint); a NaN or infinite fitness is written as ``nan`` / ``inf``;
* ``generations.csv``: per generation, the subnets drawn, how many met the constraints, the acceptance rate,
  the members found by a repair walk, the evaluations and the non-finite fitness values;
* ``search.png``: fitness vs a cost metric, the population of every generation coloured by generation,
  rejected proposals in grey, the best subnet or the front highlighted, constraint bounds as dashed lines.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import List, Sequence

from ..atomic import atomic_path, write_text
from ..plotting import pyplot, save_png
from .constraints import Constraint
from .evolution import SearchResult
from .state import Candidate, GenerationStats

__all__ = ["OUTPUTS", "write_best", "write_candidates_csv", "write_generations_csv", "plot_search", "write_report"]

OUTPUTS = ("state.json", "best.yaml", "front", "front.csv", "candidates.csv", "generations.csv", "search.png")
"""Every file (and the ``front`` folder) a search writes into its output directory."""


def _metric_names(candidates: Sequence[Candidate]) -> List[str]:
    return list(dict.fromkeys(name for c in candidates for name in c.metrics))


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _fmt(value: object) -> object:
    return "" if value is None else value


def write_candidates_csv(path: Path, candidates: Sequence[Candidate], fitness_name: str) -> None:
    """One row per proposed subnet, in order of first proposal."""
    metrics = _metric_names(candidates)
    header = ["index", "generation", "feasible", fitness_name, *metrics, "subnet"]
    rows = [
        [i, c.generation, int(c.feasible), _fmt(c.fitness), *(_fmt(c.metrics.get(m)) for m in metrics),
         json.dumps(c.subnet.to_dict(), separators=(",", ":"))]
        for i, c in enumerate(candidates)
    ]
    write_text(path, _csv_text(header, rows))


def write_generations_csv(path: Path, stats: Sequence[GenerationStats]) -> None:
    """One row per generation: its :class:`~.state.GenerationStats` and acceptance rate."""
    fields = ["generation", "draws", "feasible", "acceptance", "repaired", "evaluations", "non_finite"]
    rows = [[*(getattr(s, f) for f in fields[:3]), f"{s.acceptance:.6g}", s.repaired, s.evaluations, s.non_finite]
            for s in stats]
    write_text(path, _csv_text(fields, rows))


def _subnet_yaml(c: Candidate, fitness_name: str, records: Sequence[str]) -> str:
    header = [f"# {fitness_name}: {c.fitness}"] + [f"# {k}: {v}" for k, v in c.metrics.items()] + list(records)
    return "\n".join(header) + "\n" + c.subnet.to_yaml()


def write_best(out_dir: Path, result: SearchResult, fitness_name: str, pareto: bool,
               records: Sequence[str] = ()) -> List[Path]:
    """``best.yaml``, or ``front/NN.yaml`` + ``front.csv`` in Pareto mode; returns the YAML paths.

    ``records`` are header lines added under the fitness and metrics of every file: the search's are the
    :func:`~fairseq_shiftadd.cost.workload_header` line of the metrics' workload and the
    :class:`~fairseq_shiftadd.space.SpaceRecord` line of the space searched in.
    """
    if not pareto:
        path = out_dir / "best.yaml"
        write_text(path, _subnet_yaml(result.best[0], fitness_name, records))
        return [path]
    front_dir = out_dir / "front"
    with atomic_path(front_dir, directory=True) as partial:
        for i, c in enumerate(result.best):
            (partial / f"{i:02d}.yaml").write_text(_subnet_yaml(c, fitness_name, records), encoding="utf-8")
    metrics = _metric_names(result.best)
    rows = [[f"front/{i:02d}.yaml", c.fitness, *(c.metrics[m] for m in metrics)] for i, c in enumerate(result.best)]
    write_text(out_dir / "front.csv", _csv_text(["file", fitness_name, *metrics], rows))
    return [front_dir / f"{i:02d}.yaml" for i in range(len(result.best))]


def plot_search(path: Path, result: SearchResult, fitness_name: str, x_metric: str,
                constraints: Sequence[Constraint] = ()) -> None:
    """``fitness`` vs ``x_metric`` scatter of every generation's population (see the module docstring)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    rejected = [c for c in result.candidates if not c.feasible and x_metric in c.metrics]
    if rejected:  # never evaluated: a rug on the lower edge
        ax.scatter([c.metrics[x_metric] for c in rejected], [0.01] * len(rejected), marker="|", color="0.6",
                   label=f"rejected by the constraints ({len(rejected)})", transform=ax.get_xaxis_transform())
    cmap = plt.get_cmap("viridis")
    generations = len(result.populations)
    for g, population in enumerate(result.populations):
        members = [result.candidates[i] for i in dict.fromkeys(population)]
        ax.scatter([c.metrics[x_metric] for c in members], [c.fitness for c in members], s=14, alpha=0.7,
                   color=cmap(g / max(generations - 1, 1)),
                   label=f"generation {g}" if g in (0, generations - 1) else None)
    best = sorted(result.best, key=lambda c: c.metrics[x_metric])
    ax.plot([c.metrics[x_metric] for c in best], [c.fitness for c in best], "r*-" if len(best) > 1 else "r*",
            markersize=12, label="Pareto front" if len(best) > 1 else "best")
    for c in constraints:
        if c.metric == x_metric:
            ax.axvline(c.bound, color="k", linestyle="--", linewidth=1, label=f"constraint {c}")
    xs = [c.metrics[x_metric] for c in result.candidates if x_metric in c.metrics]
    margin = 0.03 * (max(xs) - min(xs) or 1.0)
    ax.set_xlim(min(xs) - margin, max(xs) + margin)  # the rug's transform does not widen the axis by itself
    ax.set_xlabel(x_metric)
    ax.set_ylabel(f"validation {fitness_name}")
    ax.set_title(f"evolutionary search: {result.evaluations} evaluations, {generations} generations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def write_report(out_dir: Path, result: SearchResult, fitness_name: str, pareto: bool, x_metric: str,
                 constraints: Sequence[Constraint] = (), records: Sequence[str] = ()) -> List[Path]:
    """Every output of the module docstring (``records``: as :func:`write_best`); returns the best subnet YAML
    path(s)."""
    out_dir = Path(out_dir)
    paths = write_best(out_dir, result, fitness_name, pareto, records)
    write_candidates_csv(out_dir / "candidates.csv", result.candidates, fitness_name)
    write_generations_csv(out_dir / "generations.csv", result.stats)
    plot_search(out_dir / "search.png", result, fitness_name, x_metric, constraints)
    return paths
