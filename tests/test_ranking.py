"""benchmarks/ranking.py: subnet spread, Kendall taus, and (slow) a toy end-to-end run with resume."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.search.rerank import args_file_flags
from fairseq_shiftadd.space import check, get_space

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ranking", REPO / "benchmarks" / "ranking.py")
ranking = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ranking)
DEMO = get_space("demo")


def test_spread_subnets_span_the_energy_range_deterministically():
    subs = ranking.spread_subnets(DEMO, 10, seed=1, pool=20)
    assert subs == ranking.spread_subnets(DEMO, 10, seed=1, pool=20)
    assert subs != ranking.spread_subnets(DEMO, 10, seed=2, pool=20)
    assert len(set(subs)) == 10
    cost = CostModel(DEMO, "45nm", Workload(accounting="original"))
    energies = [cost.metrics(s)["energy_mj"] for s in subs]
    assert energies == sorted(energies)
    assert energies[-1] >= 3 * energies[0]  # the cheapest and the most expensive of the pool, far apart
    for sub in subs:
        check(DEMO, sub)


def test_spread_subnets_rejects_too_few():
    with pytest.raises(ValueError, match="need at least 2"):
        ranking.spread_subnets(DEMO, 1, seed=1)
    with pytest.raises(ValueError, match="gave only"):
        ranking.spread_subnets(get_space("hat_wmt14"), 5, seed=1, pool=0)


def test_ranking_taus_orientation_and_partial_rows():
    rows = [{"inherited_loss": x, "retrained_loss": y, "valid_bleu": b}
            for x, y, b in [(1.0, 4.0, 30.0), (2.0, 5.0, 25.0), (3.0, 6.0, 20.0), (4.0, 7.0, 10.0)]]
    assert ranking.ranking_taus(rows) == {"n": 4, "tau_loss": pytest.approx(1.0), "tau_bleu": pytest.approx(1.0)}
    reversed_rows = [dict(r, retrained_loss=-r["retrained_loss"], valid_bleu=-r["valid_bleu"]) for r in rows]
    assert ranking.ranking_taus(reversed_rows)["tau_loss"] == pytest.approx(-1.0)
    assert ranking.ranking_taus(reversed_rows)["tau_bleu"] == pytest.approx(-1.0)
    # one discordant pair of six: tau = (5 - 1) / 6
    swapped = [dict(rows[0]), dict(rows[1]), dict(rows[2]), dict(rows[3])]
    swapped[2]["retrained_loss"], swapped[3]["retrained_loss"] = 7.0, 6.0
    assert ranking.ranking_taus(swapped)["tau_loss"] == pytest.approx(4 / 6)
    unfinished = rows[:1] + [{"inherited_loss": 2.0, "retrained_loss": "", "valid_bleu": ""}]
    taus = ranking.ranking_taus(unfinished)
    assert taus["n"] == 1 and math.isnan(taus["tau_loss"]) and math.isnan(taus["tau_bleu"])


@pytest.mark.slow
def test_ranking_toy_run_and_resume(multi30k_en_de: Path, tmp_path: Path):
    """A demo supernet of a few updates, 3 subnets trained for 3 updates each; a second run redoes nothing."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    supernet = tmp_path / "supernet"
    subprocess.run(
        ["fairseq-train", str(multi30k_en_de), *args_file_flags(ranking.RECIPE / "supernet.args"), "--max-update", "3",
         "--max-tokens", "1024", "--disable-validation", "--save-dir", str(supernet), "--num-workers", "0"],
        check=True, cwd=REPO, env=env, capture_output=True,
    )
    out = tmp_path / "ranking"
    command = [sys.executable, str(REPO / "benchmarks" / "ranking.py"), str(multi30k_en_de), "--supernet",
               str(supernet / "checkpoint_last.pt"), "--out", str(out), "--subnets", "3", "--max-update", "3",
               "--pool", "5", "--max-valid-sentences", "32",
               "--train-flags", "--max-tokens 1024 --max-valid-steps 2", "--generate-flags", "--beam 1 --max-len-b 5"]
    first = subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True, text=True).stdout
    assert first.count("training (") == 3 and "Kendall tau over 3 subnets" in first
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(int(r["updates"]) == 3 for r in rows)
    assert all(0 < float(r["inherited_loss"]) < 20 and 0 < float(r["retrained_loss"]) < 20 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and -1 <= summary["tau_loss"] <= 1
    assert (out / "ranking.png").stat().st_size > 0
    second = subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True, text=True).stdout
    assert second.count("trained earlier: skipped") == 3 and "training (" not in second
    changed = subprocess.run(command + ["--seed", "2"], cwd=REPO, env=env, capture_output=True, text=True)
    assert changed.returncode != 0 and "--seed 1 -> 2" in changed.stderr
    replicate = subprocess.run(command + ["--train-seed", "3"], cwd=REPO, env=env, capture_output=True, text=True)
    assert replicate.returncode != 0 and "--train-seed None -> 3" in replicate.stderr


def test_ranking_trains_with_the_train_seed(tmp_path: Path, monkeypatch):
    """``--train-seed`` reseeds the retrainings only (the subnet draw keeps ``--seed``); by default they use
    ``--seed``."""
    commands = []
    monkeypatch.setattr(ranking.subprocess, "run", lambda command, **kwargs: commands.append(command))
    for train_seed, expected in ((None, "1"), (3, "3")):
        args = ranking.argparse.Namespace(data="DATA", recipe=ranking.RECIPE / "subnet.args", max_update=3,
                                          minutes=None, seed=1, train_seed=train_seed, train_flags=[])
        ranking._train(args, tmp_path / "00.yaml", tmp_path / str(train_seed), {})
        assert commands[-1][commands[-1].index("--seed") + 1] == expected


_recipes_spec = importlib.util.spec_from_file_location("supernet_recipes", REPO / "benchmarks" / "supernet_recipes.py")
sys.path.insert(0, str(REPO / "benchmarks"))  # supernet_recipes imports ranking as its sibling, as when run
recipes = importlib.util.module_from_spec(_recipes_spec)
_recipes_spec.loader.exec_module(recipes)
sys.path.remove(str(REPO / "benchmarks"))


def _ranking_run(folder: Path, retrained: list, seed: int = 1, train_seed: Optional[int] = None,
                 settings: bool = True) -> list:
    """A finished ranking.py run (``results.csv``, and ``settings.json`` unless not ``settings``) over spread demo
    subnets with the given retrained losses."""
    subs = ranking.spread_subnets(DEMO, len(retrained), seed=seed, pool=5)
    rows = [{"index": i, "inherited_loss": 9.0, "retrained_loss": loss, "valid_bleu": 30 - loss,
             "subnet": sub.to_json()} for i, (sub, loss) in enumerate(zip(subs, retrained))]
    folder.mkdir(parents=True)
    ranking._write_rows(folder / "results.csv", rows)
    if settings:
        (folder / "settings.json").write_text(json.dumps({"seed": seed, "train_seed": train_seed}))
    return subs


def test_recipes_checkpoints_by_update(tmp_path: Path):
    import torch

    for name in ("checkpoint_1_250.pt", "checkpoint_2_500.pt", "checkpoint_best.pt", "checkpoint_2_x.pt"):
        (tmp_path / name).touch()
    torch.save({"optimizer_history": [{"num_updates": 500}]}, tmp_path / "checkpoint_last.pt")
    assert recipes.checkpoints_by_update(tmp_path) == [(250, tmp_path / "checkpoint_1_250.pt"),
                                                       (500, tmp_path / "checkpoint_2_500.pt")]
    torch.save({"optimizer_history": [{"num_updates": 620}]}, tmp_path / "checkpoint_last.pt")
    assert recipes.checkpoints_by_update(tmp_path)[-1] == (620, tmp_path / "checkpoint_last.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no checkpoint"):
        recipes.checkpoints_by_update(empty)


def test_recipes_refuse_an_unfinished_ranking_run_and_bad_recipes(tmp_path: Path):
    with pytest.raises(ValueError, match="no results.csv"):
        recipes.read_retrained(tmp_path)
    _ranking_run(tmp_path / "run", [5.0, 6.0, 7.0])
    with open(tmp_path / "run" / "results.csv") as f:
        text = f.read()
    (tmp_path / "run" / "results.csv").write_text(text.replace(",7.0,", ",,", 1))
    with pytest.raises(ValueError, match="not retrained yet"):
        recipes.read_retrained(tmp_path / "run")
    for bad in ("no-equals-sign", "=folder", f"bad name={tmp_path}", f"x={tmp_path / 'missing'}"):
        with pytest.raises(Exception, match="NAME=SAVE_DIR|no directory"):
            recipes._recipe(bad)


def test_recipes_score_each_budget_against_the_retrained_run(tmp_path: Path, capsys):
    """Two recipes, two budgets each; the inherited losses come from the resumable cache, so no model is built."""
    retrained = [5.0, 5.5, 6.0, 6.5]
    subs = _ranking_run(tmp_path / "ranking", retrained)
    out = tmp_path / "out"
    (out / "inherited").mkdir(parents=True)
    cached = {("good", 250): [8.0, 8.1, 8.2, 8.3], ("good", 500): [7.0, 7.2, 7.1, 7.3],  # tau 1, then 2/3
              ("bad", 250): [8.3, 8.2, 8.1, 8.0], ("bad", 500): [7.0, 7.0, 7.0, 7.0]}  # tau -1, then undefined
    for (name, updates), losses in cached.items():
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / f"checkpoint_{updates // 250}_{updates}.pt").touch()
        record = {"losses": {sub.to_json(): x for sub, x in zip(subs, losses)},
                  "subnets_per_update": 3 if name == "bad" else 1}
        (out / "inherited" / f"{name}-{updates}.json").write_text(json.dumps(record))
    recipes.main([str(tmp_path / "ranking"), f"good={tmp_path / 'good'}", f"bad={tmp_path / 'bad'}",
                  "--data", str(tmp_path), "--out", str(out)])
    with open(out / "recipes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["recipe"], int(r["updates"])) for r in rows] == [("good", 250), ("good", 500), ("bad", 250),
                                                                ("bad", 500)]
    taus = [float(r["tau_loss"]) for r in rows]
    assert taus[0] == pytest.approx(1.0) and taus[1] == pytest.approx(4 / 6) and taus[2] == pytest.approx(-1.0)
    assert math.isnan(taus[3])
    assert float(rows[1]["tau_bleu"]) == pytest.approx(4 / 6)  # BLEU = 30 - loss: the same order, reversed sign
    assert [int(r["subnet_steps"]) for r in rows] == [250, 500, 750, 1500]
    assert "| good | 500 | 500 | +0.67 | +0.67 | 7.00-7.30 |" in (out / "recipes.md").read_text()
    assert (out / "recipes.png").stat().st_size > 0
    assert "good at 250 updates: tau +1.000" in capsys.readouterr().out


def test_recipes_more_subnets_join_the_panel_and_only_new_ones_are_evaluated(tmp_path: Path, monkeypatch):
    """A second ranking run's subnets join the panel; the cache answers for the first run's, so only the new
    subnets reach the (stubbed) evaluation; a subnet in both runs is refused."""
    first = _ranking_run(tmp_path / "first", [5.0, 6.0])
    second = _ranking_run(tmp_path / "second", [5.5, 6.5], seed=2)
    assert not {s.to_json() for s in first} & {s.to_json() for s in second}
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "checkpoint_1_250.pt").touch()
    out = tmp_path / "out"
    (out / "inherited").mkdir(parents=True)
    cached = {first[0].to_json(): 8.0, first[1].to_json(): 8.2}
    (out / "inherited" / "good-250.json").write_text(json.dumps({"losses": cached, "subnets_per_update": 1}))
    evaluated = []

    class Fitness:  # the inherited-loss evaluation, without a model: loss 8.1 / 8.3 for the new subnets
        def __init__(self, *args, **kwargs):
            self.space = DEMO  # a task that trains one subnet per update
            self.task = type("Task", (), {"train_subnets": lambda task, model, update: [model.space]})()

        def loss(self, sub):
            evaluated.append(sub.to_json())
            return {second[0].to_json(): 8.1, second[1].to_json(): 8.3}[sub.to_json()]

    monkeypatch.setattr("fairseq_shiftadd.search.fitness.ValidationFitness", Fitness)
    recipes.main([str(tmp_path / "first"), "--more-subnets", str(tmp_path / "second"), f"good={tmp_path / 'good'}",
                  "--data", str(tmp_path), "--out", str(out)])
    assert evaluated == [s.to_json() for s in second]
    with open(out / "recipes.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["tau_loss"]) == pytest.approx(1.0)  # 5.0 < 5.5 < 6.0 < 6.5 against 8.0 < 8.1 < 8.2 < 8.3
    assert "4 subnets" in (out / "recipes.md").read_text()
    assert len(json.loads((out / "inherited" / "good-250.json").read_text())["losses"]) == 4
    with pytest.raises(ValueError,
                       match=r"repeats subnet 0 of .* different recorded training seed \(settings.json: 1, 1\)"):
        recipes.read_panel([tmp_path / "first", tmp_path / "first"])
    (out / "inherited" / "good-250.json").write_text(json.dumps({"losses": [8.0, 8.2], "subnets_per_update": 1}))
    with pytest.raises(ValueError, match="not a cache of this version"):  # the list format of earlier versions
        recipes.inherited_losses(tmp_path / "good", first, str(tmp_path), 8, 64, out / "inherited" / "good-250.json")


def test_recipes_average_the_retrainings_of_each_training_seed(tmp_path: Path):
    """Runs that retrained the same subnets with other seeds enter the panel once per subnet, with mean losses and
    BLEU; the retrainings' agreement is Kendall's tau between each subnet's first and second retraining."""
    subs = _ranking_run(tmp_path / "seed1", [5.0, 6.0, 7.0, 8.0])
    _ranking_run(tmp_path / "seed3", [5.2, 5.8, 8.4, 7.6], train_seed=3)  # swaps the last two
    _ranking_run(tmp_path / "seed4", [5.4, 6.2, 7.0, 8.0], train_seed=4)
    panel = recipes.read_panel([tmp_path / "seed1", tmp_path / "seed3", tmp_path / "seed4"])
    assert [row["subnet"] for row in panel] == subs
    assert [row["retrained_loss"] for row in panel] == pytest.approx([5.2, 6.0, 22.4 / 3, 23.6 / 3])
    assert [row["valid_bleu"] for row in panel] == pytest.approx([24.8, 24.0, 30 - 22.4 / 3, 30 - 23.6 / 3])
    assert list(panel[2]["replicates"]) == [1, 3, 4] and panel[2]["replicates"][3] == (8.4, 30 - 8.4)
    agreement = recipes.replicate_agreement(panel)
    assert [(a["first"], a["second"], a["n"]) for a in agreement] == [(1, 2, 4), (1, 3, 4), (2, 3, 4)]
    assert agreement[0]["tau_loss"] == pytest.approx(4 / 6) and agreement[1]["tau_loss"] == pytest.approx(1.0)
    assert agreement[0]["tau_bleu"] == pytest.approx(4 / 6)
    text = recipes.markdown([], panel)
    assert "4 subnets, the mean of 3 retrainings each" in text
    assert "Retraining 1 against retraining 2 of each subnet (4 subnets): tau +0.67 (loss), +0.67 (BLEU)." in text
    recipes.plot_recipes(tmp_path / "recipes.png", [{"recipe": "r", "subnet_steps": 3, "tau_loss": 0.5}], 0.6,
                         agreement)
    assert (tmp_path / "recipes.png").stat().st_size > 0
    assert "one retraining each" in recipes.markdown([], recipes.read_panel([tmp_path / "seed1"]))
    assert recipes.replicate_agreement(recipes.read_panel([tmp_path / "seed1"])) == []
    _ranking_run(tmp_path / "unrecorded", [5.0, 6.0, 7.0, 8.0], settings=False)
    for runs in (["seed1", "unrecorded"], ["unrecorded", "seed3"]):
        with pytest.raises(ValueError, match="without a different recorded training seed"):
            recipes.read_panel([tmp_path / run for run in runs])


def test_the_committed_panel_reads_as_ranking_runs():
    """The 20-subnet panel of docs/supernet-ranking.md, committed as four ranking folders (two draws, each retrained
    with two seeds), is what supernet_recipes.py reads directly: 20 subnets, two retrainings each, agreeing as its
    tables say."""
    committed = REPO / "benchmarks" / "results" / "ranking-cpu-2026-11-30"
    panel = recipes.read_panel([committed / f"panel{p}_retraining{r}" for r in (1, 2) for p in (1, 2)])
    assert len(panel) == 20 and all(sorted(row["replicates"]) == [1, 3] or sorted(row["replicates"]) == [2, 3]
                                    for row in panel)
    (agreement,) = recipes.replicate_agreement(panel)
    line = (f"Retraining 1 against retraining 2 of each subnet (20 subnets): tau {agreement['tau_loss']:+.2f} (loss), "
            f"{agreement['tau_bleu']:+.2f} (BLEU).")
    assert line in (committed / "recipes_mean.md").read_text()


_proxy_spec = importlib.util.spec_from_file_location("rerank_proxy", REPO / "benchmarks" / "rerank_proxy.py")
sys.path.insert(0, str(REPO / "benchmarks"))
rerank_proxy = importlib.util.module_from_spec(_proxy_spec)
_proxy_spec.loader.exec_module(rerank_proxy)
sys.path.remove(str(REPO / "benchmarks"))


def test_rerank_proxy_taus_of_the_early_validation_losses(tmp_path: Path, capsys):
    """Subnets whose first-epoch losses order them as the final ones do (tau 1), the second epoch's reversed."""
    for name, retrained in (("a", [5.0, 6.0]), ("b", [5.5, 6.5])):
        _ranking_run(tmp_path / name, retrained)
        for i, final in enumerate(retrained):
            (tmp_path / name / f"{i:02d}").mkdir()
            lines = [f"| INFO | valid | epoch 00{e} | valid on 'valid' subset | loss {loss} | nll_loss 1 | "
                     f"ppl 2 | num_updates {updates} | best_loss {loss}"
                     for e, (updates, loss) in enumerate(((136, final + 2), (272, 10 - final), (450, final)), 1)]
            (tmp_path / name / f"{i:02d}" / "train.log").write_text("\n".join(lines) + "\n")
    table = rerank_proxy.proxy_taus([tmp_path / "a", tmp_path / "b"])
    assert [row["updates"] for row in table] == [0, 136, 272, 450] and {row["n"] for row in table} == {4}
    assert math.isnan(table[0]["tau_loss"])  # the fake inherited losses are all equal
    assert [row["tau_loss"] for row in table[1:]] == pytest.approx([1.0, -1.0, 1.0])
    rerank_proxy.main([str(tmp_path / "a"), str(tmp_path / "b")])
    assert "| validation loss after 136 updates | 4 | +1.00 | +1.00 |" in capsys.readouterr().out
    (tmp_path / "a" / "01" / "train.log").unlink()
    with pytest.raises(SystemExit, match="train.log: no such file"):
        rerank_proxy.main([str(tmp_path / "a")])
