"""Does the supernet rank subnets? Kendall tau between inherited-weight and retrained quality (ShiftAddNAS, HAT).

The search (:mod:`fairseq_shiftadd.search`) ranks subnets by their validation loss with weights inherited from the
supernet; that is only worth doing if the ranking survives retraining. This benchmark

1. picks ``--subnets`` subnets that span the space (:func:`spread_subnets`: a pool drawn with ``--seed``, sorted by
   energy under the original accounting, taken at evenly spaced ranks from the cheapest to the most expensive);
2. computes each one's inherited validation loss in the ``--supernet`` checkpoint with the search's own fitness
   code (:class:`~fairseq_shiftadd.search.fitness.ValidationFitness`, the first ``--max-valid-sentences``);
3. trains each from scratch with the same recipe and budget (``fairseq-train --arch shiftadd_transformer --subnet
   FILE`` with the flags of ``--recipe``, as the demo retrains its winner; ``--max-update`` updates, or
   ``--minutes`` of wall clock), then reads its best validation loss (fairseq's: label-smoothed, base 2, the whole
   valid set, rounded to 3 decimals as fairseq records it; the inherited loss is the same quantity on the first
   ``--max-valid-sentences``) and decodes the valid set (``--generate-args``, sacreBLEU);
4. reports Kendall's tau-b (:func:`ranking_taus`) of the inherited loss against the retrained loss and against the
   retrained BLEU, oriented so that +1 means the supernet orders the subnets exactly as retraining does.

Resumable: a subnet whose training finished (``NN/done``) and whose decode exists is not redone; the settings are
recorded in ``settings.json`` and a different setting is refused with the difference. Outputs in ``--out``:
``subnets/NN.yaml``, one fairseq save directory per subnet, ``results.csv`` (one row per subnet),
``summary.json`` (the taus) and ``ranking.png`` (inherited vs retrained loss and BLEU).

    python benchmarks/ranking.py DATA_BIN --supernet work/demo/supernet/checkpoint_best.pt --out work/ranking \\
        [--subnets 10] [--max-update 450 | --minutes 12] [--seed 1] [--space demo]

Target (issue 9): tau >= 0.6 on the demo space; measured, not assumed.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from fairseq_shiftadd.atomic import atomic_path, write_text
from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.plotting import pyplot, save_png
from fairseq_shiftadd.search.rerank import args_file_flags, trained_loss
from fairseq_shiftadd.space import SearchSpace, SubnetConfig, check, get_space, sample

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "examples" / "multi30k_en_de"
CSV_FIELDS = ("index", "energy_original_mj", "inherited_loss", "retrained_loss", "valid_bleu", "updates",
              "train_s", "subnet")
SETTINGS = ("data", "supernet", "space", "subnets", "seed", "train_seed", "pool", "max_update", "minutes", "recipe",
            "generate_args", "max_valid_sentences", "train_flags", "generate_flags")
"""The options recorded in ``settings.json``: a resumed run must repeat them."""


def spread_subnets(space: SearchSpace, count: int, seed: int, pool: int = 50) -> List[SubnetConfig]:
    """``count`` distinct subnets spanning ``space``'s energy range (original accounting, 45 nm).

    Draws ``pool * count`` subnets with ``random.Random(seed)``, drops repeats, sorts them by energy (ties by their
    JSON form, so the order is total) and takes the ones at ranks ``round(i * (n - 1) / (count - 1))``: the
    cheapest, the most expensive and evenly spaced ranks between.

    Raises:
        ValueError: ``count < 2``, or fewer than ``count`` distinct subnets in the pool.
    """
    if count < 2:
        raise ValueError(f"--subnets={count}: need at least 2 subnets to rank")
    rng = random.Random(seed)
    distinct = list(dict.fromkeys(sample(space, rng) for _ in range(pool * count)))
    if len(distinct) < count:
        raise ValueError(f"--subnets={count}: the space {space.name!r} gave only {len(distinct)} distinct subnets")
    cost = CostModel(space, "45nm", Workload(accounting="original"))
    ordered = sorted(distinct, key=lambda s: (cost.metrics(s)["energy_mj"], s.to_json()))
    picks = [round(i * (len(ordered) - 1) / (count - 1)) for i in range(count)]
    return [ordered[i] for i in picks]


def ranking_taus(rows: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """Kendall's tau-b of the inherited loss against the retrained loss and BLEU, over the rows that have both.

    ``tau_loss = tau(inherited_loss, retrained_loss)`` and ``tau_bleu = tau(-inherited_loss, valid_bleu)``: +1 when
    the supernet orders the subnets as retraining does, -1 when reversed; ``nan`` with fewer than 2 rows or a
    constant column. Also ``n``: the number of rows used.
    """
    from scipy.stats import kendalltau

    done = [r for r in rows if _is_number(r.get("retrained_loss")) and _is_number(r.get("valid_bleu"))]
    if len(done) < 2:
        return {"n": len(done), "tau_loss": math.nan, "tau_bleu": math.nan}
    inherited = [float(r["inherited_loss"]) for r in done]
    tau_loss = kendalltau(inherited, [float(r["retrained_loss"]) for r in done]).statistic
    tau_bleu = kendalltau([-x for x in inherited], [float(r["valid_bleu"]) for r in done]).statistic
    return {"n": len(done), "tau_loss": float(tau_loss), "tau_bleu": float(tau_bleu)}


def training_seed(seed: int, train_seed: Optional[int]) -> int:
    """The ``fairseq-train --seed`` of a run's retrainings: ``train_seed``, or the subnet draw's ``seed``."""
    return seed if train_seed is None else train_seed


def _is_number(value: Any) -> bool:
    try:
        return value is not None and value != "" and not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _check_settings(out: Path, settings: Dict[str, Any]) -> None:
    path = out / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [f"--{k.replace('_', '-')} {old.get(k)!r} -> {settings[k]!r}"
                   for k in SETTINGS if old.get(k) != settings[k]]
        if changed:
            raise SystemExit(f"{out} holds a run with other settings ({'; '.join(changed)}): use another --out")
    else:
        write_text(path, json.dumps(settings, indent=2) + "\n")


def _budget_flags(args: argparse.Namespace) -> List[str]:
    if args.minutes is not None:
        return ["--stop-time-hours", str(args.minutes / 60), "--max-update", "1000000"]
    return ["--max-update", str(args.max_update)]


def _train(args: argparse.Namespace, sub_file: Path, save_dir: Path, env: Dict[str, str]) -> None:
    save_dir.mkdir(parents=True, exist_ok=True)
    seed = training_seed(args.seed, args.train_seed)
    command = ["fairseq-train", args.data, *args_file_flags(args.recipe), "--subnet", str(sub_file),
               *_budget_flags(args), "--save-dir", str(save_dir), "--seed", str(seed), "--num-workers", "0",
               "--log-format", "simple", "--no-progress-bar", *args.train_flags]
    with open(save_dir / "train.log", "a") as log:
        subprocess.run(command, check=True, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    (save_dir / "done").touch()


def _decode(args: argparse.Namespace, save_dir: Path, env: Dict[str, str]) -> Path:
    out = save_dir / "valid.gen"
    if not out.is_file():
        command = ["fairseq-generate", args.data, *args_file_flags(args.generate_args), "--gen-subset", "valid",
                   "--path", str(save_dir / "checkpoint_best.pt"), *args.generate_flags]
        with atomic_path(out) as partial, open(partial, "w") as f, open(save_dir / "generate.log", "w") as log:
            subprocess.run(command, check=True, cwd=REPO, env=env, stdout=f, stderr=log)
    return out


def _bleu(generate_output: Path) -> float:
    """The corpus BLEU fairseq-generate printed last (``... BLEU = 23.41 ...``, its --scoring)."""
    found = re.findall(r"BLEU4? = ([0-9.]+)", generate_output.read_text())
    if not found:
        raise ValueError(f"{generate_output}: no 'BLEU = ' line (did fairseq-generate finish?)")
    return float(found[-1])


def _trained(save_dir: Path) -> Dict[str, float]:
    """Best validation loss, updates and training seconds recorded in a save directory's checkpoints."""
    import torch

    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    return {"retrained_loss": trained_loss(save_dir), "updates": int(state["optimizer_history"][-1]["num_updates"]),
            "train_s": float(state["extra_state"]["previous_training_time"])}


def _write_rows(path: Path, rows: Sequence[Dict[str, Any]]) -> None:
    with atomic_path(path) as partial, open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in CSV_FIELDS} for row in rows)


def plot_ranking(path: Path, rows: Sequence[Dict[str, Any]], taus: Dict[str, float]) -> None:
    """Two scatters of the finished rows: inherited loss vs retrained loss, and vs retrained valid BLEU."""
    plt = pyplot()
    done = [r for r in rows if _is_number(r.get("retrained_loss")) and _is_number(r.get("valid_bleu"))]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, field, label, tau in ((axes[0], "retrained_loss", "retrained validation loss", taus["tau_loss"]),
                                  (axes[1], "valid_bleu", "retrained valid sacreBLEU", taus["tau_bleu"])):
        ax.scatter([float(r["inherited_loss"]) for r in done], [float(r[field]) for r in done])
        for r in done:
            ax.annotate(str(r["index"]), (float(r["inherited_loss"]), float(r[field])), fontsize=7)
        ax.set_xlabel("validation loss with inherited supernet weights")
        ax.set_ylabel(label)
        ax.set_title(f"Kendall tau {tau:+.2f} (n = {len(done)})")
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def _inherited_losses(args: argparse.Namespace, subs: Sequence[SubnetConfig], out: Path) -> List[float]:
    path = out / "inherited.json"
    if path.is_file():
        return json.loads(path.read_text())
    from fairseq_shiftadd.search.fitness import ValidationFitness

    fitness = ValidationFitness(Path(args.supernet), objective="loss", data=args.data,
                                max_sentences=args.max_valid_sentences, max_tokens=args.max_tokens)
    for sub in subs:
        check(fitness.space, sub)
    losses = [fitness.loss(sub) for sub in subs]
    write_text(path, json.dumps(losses) + "\n")
    return losses


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="fairseq data-bin (e.g. work/demo/data/bin)")
    parser.add_argument("--supernet", required=True, help="trained supernet checkpoint of --space")
    parser.add_argument("--out", required=True, type=Path, help="output directory (resumable)")
    parser.add_argument("--space", default="demo", help="the supernet's search space (default: %(default)s)")
    parser.add_argument("--subnets", type=int, default=10, help="subnets to train (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the subnet draw and the trainings")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="seed of the trainings instead (default: --seed): the same subnets retrained with "
                             "another seed, to measure how far retraining itself moves the ranking")
    parser.add_argument("--pool", type=int, default=50, help="subnets drawn per pick for the spread (default: 50)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--max-update", type=int, default=450,
                        help="training budget in updates (default: %(default)s, what the demo's 12.5 minutes gave)")
    budget.add_argument("--minutes", type=float, default=None, help="training budget in minutes of wall clock instead")
    parser.add_argument("--recipe", type=Path, default=RECIPE / "subnet.args",
                        help="fairseq-train flags of every subnet (default: the demo's retraining recipe)")
    parser.add_argument("--generate-args", type=Path, default=RECIPE / "generate.args",
                        help="fairseq-generate flags for the valid BLEU (default: the demo's)")
    parser.add_argument("--max-valid-sentences", type=int, default=500,
                        help="sentences of the inherited-loss evaluation (default: %(default)s, as the demo search)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="batch size of that evaluation")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of each training and decode")
    parser.add_argument("--train-flags", default="", help="extra fairseq-train flags, one string (e.g. for tests)")
    parser.add_argument("--generate-flags", default="", help="extra fairseq-generate flags, one string")
    args = parser.parse_args(argv)
    args.train_flags = shlex.split(args.train_flags)
    args.generate_flags = shlex.split(args.generate_flags)
    if args.minutes is not None:
        args.max_update = None
    for name in ("recipe", "generate_args"):
        if not getattr(args, name).is_file():
            parser.error(f"--{name.replace('_', '-')}: file not found: {getattr(args, name)}")
    if not Path(args.supernet).is_file():
        parser.error(f"--supernet: file not found: {args.supernet}")
    try:
        space = get_space(args.space)
        subs = spread_subnets(space, args.subnets, args.seed, args.pool)
    except ValueError as err:
        parser.error(str(err))

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in SETTINGS}
    _check_settings(out, settings)
    (out / "subnets").mkdir(exist_ok=True)
    cost = CostModel(space, "45nm", Workload(accounting="original"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(f"[ranking] {len(subs)} subnets of {space.name!r}; inherited losses on {args.supernet}", flush=True)
    inherited = _inherited_losses(args, subs, out)
    rows: List[Dict[str, Any]] = []
    for i, (sub, loss) in enumerate(zip(subs, inherited)):
        metrics = cost.metrics(sub)  # the original accounting charges no vocabulary: the data's size is not needed
        rows.append({"index": i, "energy_original_mj": metrics["energy_mj"], "inherited_loss": loss,
                     "subnet": sub.to_json()})
    start = time.monotonic()
    for row, sub in zip(rows, subs):
        i = row["index"]
        sub_file = out / "subnets" / f"{i:02d}.yaml"
        sub.save(sub_file)
        save_dir = out / f"{i:02d}"
        if (save_dir / "done").is_file():
            print(f"[ranking] {i + 1}/{len(subs)} trained earlier: skipped", flush=True)
        else:
            print(f"[ranking] {i + 1}/{len(subs)} training ({row['energy_original_mj']:.3f} mJ, inherited loss "
                  f"{row['inherited_loss']:.3f}) at {(time.monotonic() - start) / 60:.1f} min", flush=True)
            _train(args, sub_file, save_dir, env)
        row.update(_trained(save_dir))
        row["valid_bleu"] = _bleu(_decode(args, save_dir, env))
        print(f"[ranking] {i + 1}/{len(subs)} retrained loss {row['retrained_loss']:.3f}, valid BLEU "
              f"{row['valid_bleu']:.2f}, {row['updates']} updates", flush=True)
        _write_rows(out / "results.csv", rows)
    taus = ranking_taus(rows)
    (out / "summary.json").write_text(json.dumps({**taus, "settings": settings}, indent=2) + "\n")
    plot_ranking(out / "ranking.png", rows, taus)
    print(f"[ranking] Kendall tau over {taus['n']} subnets: inherited vs retrained loss {taus['tau_loss']:+.3f}, "
          f"vs valid BLEU {taus['tau_bleu']:+.3f} -> {out / 'results.csv'}, {out / 'ranking.png'}")


if __name__ == "__main__":
    sys.exit(main())
