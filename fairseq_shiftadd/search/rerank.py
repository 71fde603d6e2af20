"""The search's second stage: rerank its best candidates by a short training from scratch.

The supernet's inherited loss, the evolutionary search's fitness, ranks the demo space's subnets at a Kendall tau
of about 0.5 against their validation loss after the full retraining (README, "Which supernet recipe ranks
subnets?"). The retraining's own first epoch ranks them far better: on the same 20 subnets the validation loss
after 136 of the 450 updates has a tau of 0.72 against the final loss, 0.86 after 272 (README, "Reranking by a
short training"). So :func:`rerank` takes the search's ``top`` distinct feasible candidates by fitness (plus any
``include`` files, e.g. the winner of a restricted search), trains each from scratch with the retraining recipe for
``updates`` updates, and picks the lowest validation loss. With the same recipe and seed the winner's first
updates are exactly those a full retraining runs, so its save directory continues to the full budget.

Outputs in ``save_dir`` (resumable: a trained candidate is not trained again, a larger ``updates`` continues each
candidate's training from its last checkpoint, a smaller one or a changed pool is refused):
``NN/`` (each candidate's ``subnet.yaml`` and fairseq save directory), ``rerank.csv`` (``rank, rerank_loss,
fitness, source, subnet``, best first) and ``best.yaml`` (the winner, its search header kept, ``# rerank_loss``
and ``# rerank_dir`` added).

    fairseq-shiftadd-rerank DATA --search-dir work/search --include work/search_attention/best.yaml --top 3 \\
        --updates 136 --recipe examples/multi30k_en_de/subnet.args --seed 1 --save-dir work/rerank
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..atomic import write_text
from ..cli_errors import InputError, add_debug_flag, run_main
from ..space import SubnetConfig

__all__ = ["PoolMember", "args_file_flags", "pool", "train_command", "trained_loss", "finished_updates", "rerank",
           "main"]

RECORD_PREFIXES = ("# cost_workload:", "# search_space:")
"""Header lines of a search's ``best.yaml`` that describe the search, not the candidate: kept in the winner's file."""


@dataclass(frozen=True)
class PoolMember:
    """A subnet to rerank: its search fitness (``nan`` if unknown), where it came from, and the search's metrics
    of it (``(name, value)`` pairs, e.g. ``("energy_mj", "0.93")``), written into the winner's header."""

    subnet: SubnetConfig
    fitness: float
    source: str
    metrics: Tuple[Tuple[str, str], ...] = ()


def args_file_flags(path: Path) -> List[str]:
    """The flags of a recipe's ``.args`` file (``#`` comment and blank lines skipped, words split as the shell
    splits them), as ``examples/args.sh`` reads them.

    Raises:
        InputError: the file is missing.
    """
    if not Path(path).is_file():
        raise InputError(f"recipe file {path}: no such file")
    lines = [line for line in Path(path).read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return shlex.split(" ".join(lines))


def _records(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.startswith(RECORD_PREFIXES)]


_NOT_METRICS = ("index", "generation", "feasible", "loss", "subnet")
_METRIC_LINE = re.compile(r"^# (\w+): (.*)$")


def _file_header(path: Path) -> Tuple[float, Tuple[Tuple[str, str], ...]]:
    """A subnet file's search fitness (its ``# loss:`` line, ``nan`` without one) and the ``# name: value`` metric
    lines of its header (not its records or rerank lines)."""
    fitness, found = math.nan, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            match = _METRIC_LINE.match(line.rstrip("\n"))
            if not match or line.startswith(RECORD_PREFIXES) or match.group(1).startswith("rerank_"):
                continue
            if match.group(1) == "loss":
                fitness = float(match.group(2))
            else:
                found.append((match.group(1), match.group(2)))
    return fitness, tuple(found)


def pool(search_dir: Path, top: int, include: Sequence[Path] = ()) -> List[PoolMember]:
    """The ``top`` distinct feasible candidates of a finished search by fitness (lowest first, from its
    ``candidates.csv``), then each ``include`` file not already among them (its fitness from its ``# loss:`` line:
    a restricted search of the same supernet has the same fitness).

    Raises:
        InputError: no ``candidates.csv`` or one without a ``loss`` column (a search with another objective),
            ``top`` < 1, or an include file that is missing or not a subnet.
    """
    if top < 1:
        raise InputError(f"--top {top}: must be at least 1")
    table = Path(search_dir) / "candidates.csv"
    if not table.is_file():
        raise InputError(f"{table}: no such file (run fairseq-shiftadd-search with --save-dir {search_dir} first)")
    with open(table, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if "loss" not in (reader.fieldnames or ()):
            raise InputError(f"{table}: no 'loss' column: rerank a search run with --objective loss")
        rows = [r for r in reader if r["feasible"] == "1" and r["loss"]]
    seen: Dict[SubnetConfig, PoolMember] = {}
    for row in sorted(rows, key=lambda r: float(r["loss"])):
        sub = SubnetConfig.from_dict(json.loads(row["subnet"]))
        if sub not in seen and math.isfinite(float(row["loss"])):
            metrics = tuple((k, v) for k, v in row.items() if k not in _NOT_METRICS and v)
            seen[sub] = PoolMember(sub, float(row["loss"]), f"{search_dir} #{row['index']}", metrics)
        if len(seen) == top:
            break
    for path in include:
        try:
            sub = SubnetConfig.load(path)
        except (OSError, ValueError) as err:
            raise InputError(f"--include {path}: {err}") from None
        fitness, metrics = _file_header(path)
        seen.setdefault(sub, PoolMember(sub, fitness, str(path), metrics))
    return list(seen.values())


def trained_loss(save_dir: Path) -> float:
    """The best validation loss recorded in ``save_dir/checkpoint_best.pt`` (fairseq's, base 2).

    Raises:
        ValueError: no checkpoint, or none with a validation loss.
    """
    import torch

    path = Path(save_dir) / "checkpoint_best.pt"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (did fairseq-train finish?)")
    loss = torch.load(path, map_location="cpu", weights_only=False)["extra_state"].get("best")
    if loss is None:
        raise ValueError(f"{path}: no validation loss recorded")
    return float(loss)


def train_command(data: str, recipe: Sequence[str], member_dir: Path, updates: int, seed: int,
                  extra: Sequence[str]) -> List[str]:
    """The ``fairseq-train`` command of one short training: the recipe, then ``extra``, then this stage's own
    subnet, save directory, seed and budget, last, so that neither the recipe nor ``extra`` (e.g. a full
    retraining's ``--max-update 450``) overrides them (fairseq keeps an option's last value)."""
    return ["fairseq-train", data, *recipe, "--num-workers", "0", "--log-format", "simple", "--no-progress-bar",
            *extra, "--subnet", str(member_dir / "subnet.yaml"), "--save-dir", str(member_dir), "--seed", str(seed),
            "--max-update", str(updates)]


def _train(data: str, recipe: Sequence[str], member_dir: Path, updates: int, seed: int,
           extra: Sequence[str]) -> None:
    command = train_command(data, recipe, member_dir, updates, seed, extra)
    log_path = member_dir / "train.log"
    with open(log_path, "a") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    if status != 0:
        lines = log_path.read_text(errors="replace").strip().splitlines() or [""]
        raise InputError(f"fairseq-train of {member_dir / 'subnet.yaml'} failed (exit {status}), see {log_path}: "
                         f"{lines[-1][-200:]}")
    write_text(member_dir / "done", f"{updates}\n")


def finished_updates(member_dir: Path) -> int:
    """The budget of the member's last finished short training (its ``done`` marker), 0 if none finished."""
    done = Path(member_dir) / "done"
    if not done.is_file():
        return 0
    try:
        return int(done.read_text())
    except ValueError:
        raise InputError(f"{done}: not an update count (a rerank from before counts were recorded: use another "
                         f"--save-dir)") from None


def rerank(data: str, members: Sequence[PoolMember], recipe: Sequence[str], updates: int, seed: int,
           save_dir: Path, extra: Sequence[str] = (), records: Sequence[str] = (), jobs: int = 1
           ) -> List[Dict[str, object]]:
    """Train every member for ``updates`` updates (``NN/`` in ``save_dir``, ``jobs`` trainings at a time) and
    return rows best first. ``recipe``'s relative paths (``--user-dir fairseq_shiftadd``) are read from the current
    directory, as ``fairseq-train`` reads them: run it where the recipe is meant to run (the repository root).

    Raises:
        InputError: ``save_dir`` holds a rerank of another pool (its ``NN/subnet.yaml`` differ), or a training
            failed (naming its log and last line).
    """
    dirs = [Path(save_dir) / f"{i:02d}" for i in range(len(members))]
    for member, member_dir in zip(members, dirs):
        member_dir.mkdir(parents=True, exist_ok=True)
        sub_file = member_dir / "subnet.yaml"
        if sub_file.is_file() and SubnetConfig.load(sub_file) != member.subnet:
            raise InputError(f"{save_dir} holds a rerank of another pool ({sub_file} differs): use another --save-dir")
        write_text(sub_file, member.subnet.to_yaml())
    finished = [finished_updates(d) for d in dirs]
    for member_dir, done in zip(dirs, finished):
        if done > updates:
            raise InputError(f"{member_dir} was trained for {done} updates, more than --updates {updates}: use "
                             f"another --save-dir")
    todo = [(i, m, d) for i, (m, d) in enumerate(zip(members, dirs)) if finished[i] < updates]

    def train(item) -> None:
        i, member, member_dir = item
        start = f", continuing from {finished[i]}" if finished[i] else ""
        print(f"rerank: training {i + 1}/{len(members)} for {updates} updates{start} ({member.source})", flush=True)
        _train(data, recipe, member_dir, updates, seed, extra)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool_:
        list(pool_.map(train, todo))  # list(): re-raises a failed training
    rows = [{"rerank_loss": trained_loss(d), "fitness": m.fitness, "source": m.source, "dir": str(d),
             "subnet": m.subnet, "metrics": m.metrics} for m, d in zip(members, dirs)]
    rows.sort(key=lambda r: r["rerank_loss"])
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["rank", "rerank_loss", "fitness", "source", "dir", "subnet"])
    for rank, r in enumerate(rows):
        writer.writerow([rank, f"{r['rerank_loss']:.6g}", f"{r['fitness']:.6g}", r["source"], r["dir"],
                         json.dumps(r["subnet"].to_dict(), separators=(",", ":"))])
    write_text(Path(save_dir) / "rerank.csv", table.getvalue())
    best = rows[0]
    header = [f"# rerank_loss: {best['rerank_loss']}", f"# rerank_updates: {updates}",
              f"# rerank_dir: {best['dir']}", f"# loss: {best['fitness']}",
              *(f"# {name}: {value}" for name, value in best["metrics"]), *records]
    write_text(Path(save_dir) / "best.yaml", "\n".join(header) + "\n" + best["subnet"].to_yaml())
    return rows


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="fairseq-shiftadd-rerank", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="fairseq data-bin of the translation task")
    parser.add_argument("--search-dir", type=Path, required=True, help="a finished search's --save-dir")
    parser.add_argument("--include", type=Path, nargs="*", default=[],
                        help="subnet files added to the pool (e.g. a restricted search's best.yaml)")
    parser.add_argument("--top", type=int, default=3, help="distinct feasible candidates taken from the search")
    parser.add_argument("--updates", type=int, default=136, help="updates of each short training")
    parser.add_argument("--recipe", type=Path, required=True, help="the retraining recipe's .args file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings run at a time (one thread each: OMP_NUM_THREADS)")
    parser.add_argument("--save-dir", type=Path, required=True)
    parser.add_argument("--train-flags", default="", help="extra fairseq-train flags, one string")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.updates < 1:
        raise InputError(f"--updates {args.updates}: must be at least 1")
    members = pool(args.search_dir, args.top, args.include)
    best_yaml = args.search_dir / "best.yaml"
    records = _records(best_yaml) if best_yaml.is_file() else []
    rows = rerank(args.data, members, args_file_flags(args.recipe), args.updates, args.seed, args.save_dir,
                  shlex.split(args.train_flags), records, args.jobs)
    for rank, r in enumerate(rows):
        print(f"{rank}: rerank loss {r['rerank_loss']:.3f}  search fitness {r['fitness']:.3f}  {r['source']}")
    print(args.save_dir / "best.yaml")


main = run_main(_main, "fairseq-shiftadd-rerank")
