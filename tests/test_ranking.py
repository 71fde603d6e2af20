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

import pytest

from fairseq_shiftadd.cost import CostModel, Workload
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
        ["fairseq-train", str(multi30k_en_de), *ranking._flags(ranking.RECIPE / "supernet.args"), "--max-update", "3",
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
