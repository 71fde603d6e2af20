"""The search's second stage (:mod:`fairseq_shiftadd.search.rerank`): the pool, the reranking and its resume.

The short trainings are stood in for by a fake ``fairseq-train`` that writes a checkpoint with a chosen validation
loss, so these tests check the stage's logic; the README's command trains for real in
``tests/test_readme.py::test_rerank_command_runs_as_written`` (slow).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict

import pytest
import torch

from fairseq_shiftadd.cli_errors import InputError
from fairseq_shiftadd.search import rerank as rr
from fairseq_shiftadd.space import SubnetConfig, get_space, sample

DEMO = get_space("demo")


def _subnets(count: int):
    import random

    rng, subs = random.Random(0), []
    while len(subs) < count:
        sub = sample(DEMO, rng)
        if sub not in subs:
            subs.append(sub)
    return subs


def search_dir(tmp_path: Path, rows) -> Path:
    """A finished search in ``tmp_path/search``: its candidates.csv with rows of (feasible, loss, subnet) and a
    best.yaml with the search's records."""
    folder = tmp_path / "search"
    folder.mkdir()
    with open(folder / "candidates.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["index", "generation", "feasible", "loss", "energy_mj", "subnet"])
        for i, (feasible, loss, sub) in enumerate(rows):
            table.writerow([i, 0, int(feasible), loss, 1.0, json.dumps(sub.to_dict(), separators=(",", ":"))])
    (folder / "best.yaml").write_text('# loss: 1.0\n# energy_mj: 0.5\n# search_space: {"name": "demo"}\n'
                                      + rows[0][2].to_yaml())
    return folder


def test_pool_takes_the_best_distinct_feasible_candidates(tmp_path: Path) -> None:
    a, b, c, d = _subnets(4)
    folder = search_dir(tmp_path, [(True, 6.5, a), (False, "", b), (True, 6.1, c), (True, 6.1, c), (True, "nan", d),
                                    (True, 6.3, d)])
    assert [(m.subnet, m.fitness) for m in rr.pool(folder, 2)] == [(c, 6.1), (d, 6.3)]
    assert rr.pool(folder, 1)[0].metrics == (("energy_mj", "1.0"),)
    included = tmp_path / "restricted.yaml"
    included.write_text("# loss: 6.7\n# energy_mj: 0.8\n# search_space: {}\n" + a.to_yaml())
    again = tmp_path / "again.yaml"
    c.save(again)
    members = rr.pool(folder, 2, [included, again])  # a is new; c is already in the pool
    assert [m.subnet for m in members] == [c, d, a] and members[2].fitness == 6.7  # its '# loss:' line
    assert members[2].metrics == (("energy_mj", "0.8"),)  # the included file's metrics, not its fitness or records
    assert [m.subnet for m in rr.pool(folder, 10)] == [c, d, a]  # fewer candidates than asked: all of them
    b.save(tmp_path / "bare.yaml")
    assert math.isnan(rr.pool(folder, 1, [tmp_path / "bare.yaml"])[1].fitness)  # no header: fitness unknown
    with pytest.raises(InputError, match="--top 0: must be at least 1"):
        rr.pool(folder, 0)
    with pytest.raises(InputError, match="candidates.csv: no such file"):
        rr.pool(tmp_path, 1)
    bleu = tmp_path / "bleu"
    bleu.mkdir()
    (bleu / "candidates.csv").write_text("index,generation,feasible,bleu,subnet\n")
    with pytest.raises(InputError, match="no 'loss' column: rerank a search run with --objective loss"):
        rr.pool(bleu, 1)
    with pytest.raises(InputError, match="--include .*nowhere.yaml"):
        rr.pool(folder, 1, [tmp_path / "nowhere.yaml"])


def _fake_train(losses: Dict[SubnetConfig, float], calls: list):
    def train(data, recipe, member_dir, updates, seed, extra):
        sub = SubnetConfig.load(member_dir / "subnet.yaml")
        calls.append((sub, updates, seed, tuple(recipe), tuple(extra)))
        torch.save({"extra_state": {"best": losses[sub] - updates / 1000}}, member_dir / "checkpoint_best.pt")
        (member_dir / "done").write_text(f"{updates}\n")
    return train


def test_rerank_picks_the_lowest_short_training_loss_and_resumes(tmp_path: Path, monkeypatch) -> None:
    a, b, c = _subnets(3)
    members = [rr.PoolMember(a, 6.0, "s #0"), rr.PoolMember(b, 6.1, "s #1", (("energy_mj", "0.9"),)),
               rr.PoolMember(c, math.nan, "inc")]
    calls: list = []
    monkeypatch.setattr(rr, "_train", _fake_train({a: 5.9, b: 5.5, c: 5.7}, calls))
    out = tmp_path / "rerank"
    rows = rr.rerank("DATA", members, ["--arch", "x"], 136, 3, out, ["--cpu"], ['# search_space: {"name": "demo"}'])
    assert [r["subnet"] for r in rows] == [b, c, a]  # by the short training, not by the search's fitness
    assert [call[1:] for call in calls] == [(136, 3, ("--arch", "x"), ("--cpu",))] * 3
    best = (out / "best.yaml").read_text()
    assert SubnetConfig.load(out / "best.yaml") == b
    assert best.startswith("# rerank_loss: 5.364\n# rerank_updates: 136\n") and f"# rerank_dir: {out / '01'}" in best
    assert '# search_space: {"name": "demo"}' in best and "# loss: 6.1\n# energy_mj: 0.9\n" in best
    with open(out / "rerank.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["rank"], r["source"]) for r in table] == [("0", "s #1"), ("1", "inc"), ("2", "s #0")]
    assert SubnetConfig.from_dict(json.loads(table[1]["subnet"])) == c
    calls.clear()
    assert [r["subnet"] for r in rr.rerank("DATA", members, [], 136, 3, out)] == [b, c, a]
    assert calls == []  # trained earlier: nothing runs again
    with pytest.raises(InputError, match="holds a rerank of another pool"):
        rr.rerank("DATA", members[::-1], [], 136, 3, out)


def test_a_larger_budget_continues_every_member_and_a_smaller_is_refused(tmp_path: Path, monkeypatch) -> None:
    a, b = _subnets(2)
    members = [rr.PoolMember(a, 6.0, "s #0"), rr.PoolMember(b, 6.1, "s #1")]
    calls: list = []
    monkeypatch.setattr(rr, "_train", _fake_train({a: 5.9, b: 5.5}, calls))
    out = tmp_path / "rerank"
    rr.rerank("DATA", members, [], 136, 3, out)
    assert [rr.finished_updates(out / d) for d in ("00", "01")] == [136, 136]
    calls.clear()
    rows = rr.rerank("DATA", members, [], 272, 3, out)
    assert [call[:2] for call in calls] == [(a, 272), (b, 272)]  # fairseq-train resumes each from checkpoint_last
    assert rows[0]["rerank_loss"] == pytest.approx(5.5 - 0.272)
    assert "# rerank_updates: 272\n" in (out / "best.yaml").read_text()
    with pytest.raises(InputError, match="trained for 272 updates, more than --updates 136"):
        rr.rerank("DATA", members, [], 136, 3, out)
    (out / "00" / "done").write_text("")
    with pytest.raises(InputError, match="done: not an update count"):
        rr.rerank("DATA", members, [], 272, 3, out)


def test_train_command_keeps_the_stage_budget_last(tmp_path: Path) -> None:
    """A full retraining's flags passed through (``--max-update 450``) must not override the short budget."""
    command = rr.train_command("DATA", ["--max-update", "100000", "--seed", "9"], tmp_path, 136, 3,
                               ["--max-update", "450", "--max-tokens", "1024"])
    assert command[-2:] == ["--max-update", "136"]
    assert command[len(command) - 1 - command[::-1].index("--seed") + 1] == "3"  # the last --seed is the stage's
    assert "--max-tokens" in command and command.index("--max-tokens") < command.index("--subnet")


def test_args_file_flags(tmp_path: Path) -> None:
    recipe = tmp_path / "r.args"
    recipe.write_text("# a comment\n--arch shiftadd_transformer\n\n--adam-betas '(0.9, 0.98)'\n  # indented\n"
                      "--lr 1e-3\n")
    assert rr.args_file_flags(recipe) == ["--arch", "shiftadd_transformer", "--adam-betas", "(0.9, 0.98)", "--lr",
                                          "1e-3"]
    with pytest.raises(InputError, match="no such file"):
        rr.args_file_flags(tmp_path / "none.args")
