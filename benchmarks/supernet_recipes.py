"""Which supernet recipe ranks subnets? Kendall tau against retraining, per recipe and per training budget.

:mod:`ranking` trains subnets from scratch once; their retrained validation loss and BLEU do not depend on the
supernet. This benchmark reuses that finished run (``RANKING_DIR``: its ``results.csv``) and scores other
supernets against it: for every supernet checkpoint of every recipe (each ``NAME=SAVE_DIR``: fairseq's interval
checkpoints ``checkpoint_E_U.pt`` and ``checkpoint_last.pt``, one per number of updates), it computes the inherited
validation loss of the same subnets (:class:`~fairseq_shiftadd.search.fitness.ValidationFitness`, the first
``--max-valid-sentences``, as :mod:`ranking` and the search do) and the Kendall taus of :func:`ranking.ranking_taus`.

Outputs in ``--out`` (resumable: a checkpoint whose losses are in ``inherited/`` is not evaluated again):
``recipes.csv`` (one row per recipe and budget: ``recipe, updates, subnet_steps, tau_loss, tau_bleu, inherited_min,
inherited_max, checkpoint``), ``recipes.md`` (the same as a table) and ``recipes.png`` (tau against the subnets
trained, updates times the subnets per update (3 with ``--sandwich``, 4 with ``--sandwich-operators``), one line
per recipe). ``--more-subnets`` adds the subnets of further ranking runs (another ``--seed``) to the panel: with n
subnets one tau's standard error is about ``sqrt(2 (2n + 5) / (9 n (n - 1)))``, 0.25 at n = 10 and 0.16 at n = 20.
A run that retrained the same subnets with another seed (``ranking.py --train-seed``) averages its retrainings with
theirs, and ``recipes.md`` then says how well one retraining ranks another's (:func:`replicate_agreement`).

    python benchmarks/supernet_recipes.py work/ranking --data DATA_BIN --out work/recipes \\
        single=work/recipes/single nosharing=work/recipes/nosharing

``benchmarks/supernet_recipes.sh`` trains the recipes compared in the README and runs this.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from fairseq_shiftadd.atomic import atomic_path, write_text
from fairseq_shiftadd.plotting import pyplot, save_png
from fairseq_shiftadd.space import SubnetConfig, check
from ranking import ranking_taus, training_seed

CSV_FIELDS = ("recipe", "updates", "subnet_steps", "tau_loss", "tau_bleu", "inherited_min", "inherited_max",
              "checkpoint")
_INTERVAL = re.compile(r"checkpoint_\d+_(\d+)\.pt$")


def read_retrained(ranking_dir: Path) -> List[Dict[str, Any]]:
    """The finished rows of a :mod:`ranking` run (``results.csv``), each with its parsed ``subnet``.

    Raises:
        ValueError: no ``results.csv``, or a row without a retrained loss or BLEU (the run has not finished).
    """
    path = ranking_dir / "results.csv"
    if not path.is_file():
        raise ValueError(f"{ranking_dir}: no results.csv (run benchmarks/ranking.py there first)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    unfinished = [r["index"] for r in rows if not r.get("retrained_loss") or not r.get("valid_bleu")]
    if unfinished or len(rows) < 2:
        raise ValueError(f"{path}: subnets {unfinished or rows} not retrained yet (finish benchmarks/ranking.py)")
    return [{**r, "subnet": SubnetConfig.from_json(r["subnet"])} for r in rows]


def checkpoints_by_update(save_dir: Path) -> List[Tuple[int, Path]]:
    """``(updates, path)`` for each budget saved in a fairseq save directory, ascending.

    Interval checkpoints are named by their update (``checkpoint_1_250.pt``); ``checkpoint_last.pt`` is read for
    its own count and kept only if no interval checkpoint has the same one.

    Raises:
        ValueError: the directory holds no checkpoint.
    """
    found: Dict[int, Path] = {}
    for path in save_dir.glob("checkpoint_*_*.pt"):
        match = _INTERVAL.search(path.name)
        if match:
            found[int(match.group(1))] = path
    last = save_dir / "checkpoint_last.pt"
    if last.is_file():
        import torch

        state = torch.load(last, map_location="cpu", weights_only=False)
        found.setdefault(int(state["optimizer_history"][-1]["num_updates"]), last)
    if not found:
        raise ValueError(f"{save_dir}: no checkpoint_*_*.pt or checkpoint_last.pt")
    return sorted(found.items())


def inherited_losses(checkpoint: Path, subnets: Sequence[SubnetConfig], data: str, max_sentences: int,
                     max_tokens: int, cache: Path) -> Tuple[List[float], int]:
    """Each subnet's validation loss (base 2) with weights inherited from ``checkpoint``, and the subnets the
    supernet trained per update (the task's own list: 1, 3 with ``--sandwich``, 4 with ``--sandwich-operators``).

    Cached in ``cache`` (JSON: ``losses`` by the subnet's JSON, ``subnets_per_update``): a subnet already in it
    is not evaluated again, so a panel that grows (``--more-subnets``) costs only its new subnets.
    """
    record = json.loads(cache.read_text()) if cache.is_file() else {"losses": {}}
    if not isinstance(record.get("losses"), dict):
        raise ValueError(f"{cache}: not a cache of this version (losses by subnet): delete it to recompute")
    missing = [sub for sub in subnets if sub.to_json() not in record["losses"]]
    if missing:
        from fairseq_shiftadd.search.fitness import ValidationFitness

        fitness = ValidationFitness(checkpoint, objective="loss", data=data, max_sentences=max_sentences,
                                    max_tokens=max_tokens)
        for sub in missing:
            check(fitness.space, sub)
        record["losses"].update({sub.to_json(): fitness.loss(sub) for sub in missing})
        record["subnets_per_update"] = len(fitness.task.train_subnets(fitness, 0))  # reads only fitness.space
        write_text(cache, json.dumps(record) + "\n")
    return [record["losses"][sub.to_json()] for sub in subnets], record["subnets_per_update"]


def training_seed_of(ranking_dir: Path) -> Optional[int]:
    """The seed a :mod:`ranking` run retrained its subnets with (its ``settings.json``), ``None`` if unrecorded."""
    path = ranking_dir / "settings.json"
    if not path.is_file():
        return None
    settings = json.loads(path.read_text())
    return training_seed(settings["seed"], settings.get("train_seed"))


def read_panel(ranking_dirs: Sequence[Path]) -> List[Dict[str, Any]]:
    """The retrained rows of one or more finished :mod:`ranking` runs on the same data, as one panel.

    A subnet retrained by several runs with different training seeds (``ranking.py --train-seed``) enters the panel
    once: its ``retrained_loss`` and ``valid_bleu`` are the means over those retrainings, and ``replicates`` maps each
    training seed to that retraining's ``(retrained_loss, valid_bleu)``.

    Raises:
        ValueError: a run is unfinished (:func:`read_retrained`), or two runs retrained a subnet with the same (or an
            unrecorded) training seed.
    """
    panel: Dict[str, Dict[str, Any]] = {}
    for folder in ranking_dirs:
        seed = training_seed_of(folder)
        for row in read_retrained(folder):
            key, where = row["subnet"].to_json(), f"subnet {row['index']} of {folder}"
            entry = panel.setdefault(key, {**row, "where": where, "replicates": {}})
            if entry["replicates"] and (seed is None or seed in entry["replicates"] or None in entry["replicates"]):
                seeds = ", ".join(map(str, [*entry["replicates"], seed]))
                raise ValueError(f"{where} repeats {entry['where']} without a different recorded training seed "
                                 f"(settings.json: {seeds}): a subnet may enter the panel once per training seed")
            entry["replicates"][seed] = (float(row["retrained_loss"]), float(row["valid_bleu"]))
    for entry in panel.values():
        losses, bleus = zip(*entry["replicates"].values())
        entry["retrained_loss"], entry["valid_bleu"] = statistics.fmean(losses), statistics.fmean(bleus)
    return list(panel.values())


def replicate_agreement(panel: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """How far retraining itself moves the ranking: Kendall's tau-b between each subnet's ``first`` and ``second``
    retraining (1-based, in the order the runs were given, so each pair of a subnet has two different seeds), over
    the ``n`` subnets retrained that often, of the losses (``tau_loss``) and of the BLEU (``tau_bleu``).

    One retraining orders the subnets as another does at this tau: the supernet's tau against one retraining is read
    against it (its tau against the mean of several is less noisy).
    """
    from scipy.stats import kendalltau

    most = max((len(row["replicates"]) for row in panel), default=0)
    pairs = []
    for first in range(most):
        for second in range(first + 1, most):
            both = [list(row["replicates"].values()) for row in panel if len(row["replicates"]) > second]
            if len(both) < 2:
                continue
            taus = [kendalltau([r[first][k] for r in both], [r[second][k] for r in both]).statistic for k in (0, 1)]
            pairs.append({"first": first + 1, "second": second + 1, "n": len(both), "tau_loss": float(taus[0]),
                          "tau_bleu": float(taus[1])})
    return pairs


def _recipe(text: str) -> Tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=SAVE_DIR (NAME of letters, digits, _.+-)")
    if not Path(folder).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: no directory {folder}")
    return name, Path(folder)


def plot_recipes(path: Path, rows: Sequence[Dict[str, Any]], target: float,
                 agreement: Sequence[Dict[str, Any]] = ()) -> None:
    """Kendall tau (inherited vs retrained loss) against the subnet steps trained (equal compute for recipes that
    train several subnets per update), one line per recipe; with ``agreement`` (:func:`replicate_agreement`), the
    tau of one retraining against another as a dotted line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == name]
        ax.plot([r["subnet_steps"] for r in mine], [r["tau_loss"] for r in mine], marker="o", label=name)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target}")
    for pair in agreement:
        ax.axhline(pair["tau_loss"], color="black", linestyle=":", linewidth=1,
                   label=f"retraining {pair['first']} vs {pair['second']} ({pair['tau_loss']:+.2f})")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("subnets trained (updates x subnets per update)")
    ax.set_ylabel("Kendall tau, inherited vs retrained loss")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def markdown(rows: Sequence[Dict[str, Any]], panel: Sequence[Dict[str, Any]]) -> str:
    """The recipes table, then what it was scored against: the panel's size, its retrainings per subnet and, with
    replicates, :func:`replicate_agreement`."""
    lines = ["| recipe | supernet updates | subnets trained | tau vs retrained loss | tau vs retrained BLEU | "
             "inherited loss range |", "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['recipe']} | {r['updates']} | {r['subnet_steps']} | {r['tau_loss']:+.2f} | {r['tau_bleu']:+.2f} | "
              f"{r['inherited_min']:.2f}-{r['inherited_max']:.2f} |" for r in rows]
    counts = sorted({len(row["replicates"]) for row in panel})
    retrainings = "one retraining each" if counts == [1] else \
        f"the mean of {'-'.join(map(str, counts))} retrainings each (different training seeds)"
    lines += ["",
              f"{len(panel)} subnets, {retrainings}; Kendall tau-b, +1: the supernet orders them as retraining does."]
    lines += [f"Retraining {pair['first']} against retraining {pair['second']} of each subnet ({pair['n']} subnets): "
              f"tau {pair['tau_loss']:+.2f} (loss), {pair['tau_bleu']:+.2f} (BLEU)."
              for pair in replicate_agreement(panel)]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ranking_dir", type=Path, help="a finished benchmarks/ranking.py --out directory")
    parser.add_argument("--more-subnets", type=Path, action="append", default=[], metavar="RANKING_DIR",
                        help="another finished ranking.py run on the same data: its subnets join the panel "
                             "(--seed 2), or its retrainings are averaged with theirs (--train-seed 3; repeatable)")
    parser.add_argument("recipes", nargs="+", type=_recipe, metavar="NAME=SAVE_DIR",
                        help="supernet save directories to score, each named by its recipe")
    parser.add_argument("--data", required=True, help="the fairseq data-bin the subnets were validated on")
    parser.add_argument("--out", required=True, type=Path, help="output directory (resumable)")
    parser.add_argument("--max-valid-sentences", type=int, default=500,
                        help="sentences of the inherited-loss evaluation (default: %(default)s, as ranking.py)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="batch size of that evaluation")
    parser.add_argument("--target", type=float, default=0.6, help="the tau target drawn in the plot (issue 9)")
    args = parser.parse_args(argv)
    try:
        retrained = read_panel([args.ranking_dir, *args.more_subnets])
        recipes = [(name, checkpoints_by_update(folder)) for name, folder in args.recipes]
    except ValueError as err:
        parser.error(str(err))
    subnets = [r["subnet"] for r in retrained]
    (args.out / "inherited").mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, Any]] = []
    for name, checkpoints in recipes:
        for updates, checkpoint in checkpoints:
            cache = args.out / "inherited" / f"{name}-{updates}.json"
            try:
                losses, per_update = inherited_losses(checkpoint, subnets, args.data, args.max_valid_sentences,
                                                      args.max_tokens, cache)
            except ValueError as err:
                parser.error(str(err))
            taus = ranking_taus([{**r, "inherited_loss": x} for r, x in zip(retrained, losses)])
            rows.append({"recipe": name, "updates": updates,
                         "subnet_steps": updates * per_update, "tau_loss": taus["tau_loss"],
                         "tau_bleu": taus["tau_bleu"], "inherited_min": min(losses), "inherited_max": max(losses),
                         "checkpoint": str(checkpoint)})
            print(f"[recipes] {name} at {updates} updates: tau {taus['tau_loss']:+.3f} (loss), "
                  f"{taus['tau_bleu']:+.3f} (BLEU)", flush=True)
    with atomic_path(args.out / "recipes.csv") as partial, open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows, retrained)
    write_text(args.out / "recipes.md", table)
    plot_recipes(args.out / "recipes.png", rows, args.target, replicate_agreement(retrained))
    print(table)


if __name__ == "__main__":
    sys.exit(main())
