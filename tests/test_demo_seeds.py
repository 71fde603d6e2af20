"""benchmarks/demo_seeds.py, the aggregator of the demo's seed runs. A test of the aggregator only: the report files
it reads are fabricated here (the numbers are not results of any run)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("demo_seeds", REPO / "benchmarks" / "demo_seeds.py")
demo_seeds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_seeds)

FABRICATED = {  # seed -> model -> (sacreBLEU, energy original mJ); made up for the aggregator test
    1: {"hybrid": (24.0, 0.90), "attention_only": (23.0, 0.95), "baseline": (25.0, 1.44)},
    2: {"hybrid": (25.0, 0.80), "attention_only": (24.0, 0.97), "baseline": (24.0, 1.44)},
    3: {"hybrid": (26.0, 0.70), "attention_only": (22.0, 0.99), "baseline": (26.0, 1.44)},
}


def _write_run(folder: Path, rows: dict) -> Path:
    (folder / "report").mkdir(parents=True)
    data = [{"name": name, "sacrebleu": bleu, "tokenized_bleu": bleu + 0.1, "energy_original_mj": energy,
             "energy_streaming_mj": 20 * energy, "params": 1, "subnet": "same" if bleu == 23.0 else name}
            for name, (bleu, energy) in rows.items()]
    (folder / "report" / "results.json").write_text(json.dumps(data))
    return folder


def test_aggregator_mean_spread_and_targets_on_fabricated_reports(tmp_path, capsys):
    runs = [_write_run(tmp_path / f"seed{s}", rows) for s, rows in FABRICATED.items()]
    demo_seeds.main([*map(str, runs), "--out", str(tmp_path / "summary.md")])
    summary = json.loads((tmp_path / "summary.json").read_text())
    hybrid = summary["stats"]["hybrid"]
    assert hybrid["sacrebleu"] == {"mean": 25.0, "std": 1.0, "min": 24.0, "max": 26.0, "n": 3}
    assert hybrid["energy_original_mj"]["mean"] == pytest.approx(0.8)
    assert hybrid["energy_streaming_mj"]["std"] == pytest.approx(20 * 0.1)
    assert summary["stats"]["attention_only"]["sacrebleu"]["mean"] == pytest.approx(23.0)
    margins = {t["target"]: (t["margin"], t["met"]) for t in summary["targets"]}
    assert margins["hybrid sacreBLEU >= attention-only winner's"] == (pytest.approx(2.0), True)
    assert margins["hybrid sacreBLEU >= baseline's - 0.5"] == (pytest.approx(0.5), True)
    assert margins["hybrid energy (original) <= 0.7 x baseline's, mJ"] == (pytest.approx(0.7 * 1.44 - 0.8), True)
    out = capsys.readouterr().out
    assert "| hybrid | 25.00 ± 1.00 [24.00, 26.00]" in out and out == (tmp_path / "summary.md").read_text()
    assert "| seed2 | 25.00 (0.80) | 24.00 (0.97) | 24.00 (1.44) | no |" in out


def test_per_run_table_flags_a_hybrid_search_that_returned_the_attention_only_winner():
    same = {"sacrebleu": 20.0, "energy_original_mj": 0.9, "subnet": "{}"}
    run = {"hybrid": same, "attention_only": same, "baseline": {**same, "subnet": None}}
    row = "| seed1 | 20.00 (0.90) | 20.00 (0.90) | 20.00 (0.90) | yes |"
    assert demo_seeds.per_run_table(["seed1"], [run])[-1] == row


def test_aggregator_reports_a_missed_target():
    rows = {1: {"hybrid": (20.0, 1.2), "attention_only": (21.0, 0.9), "baseline": (22.0, 1.44)}}
    stats = demo_seeds.aggregate([{m: {"sacrebleu": b, "tokenized_bleu": b, "energy_original_mj": e,
                                       "energy_streaming_mj": e} for m, (b, e) in rows[1].items()}])
    assert stats["hybrid"]["sacrebleu"]["std"] == 0.0
    assert [t["met"] for t in demo_seeds.targets(stats)] == [False, False, False]


def test_aggregator_rejects_a_run_without_a_model(tmp_path, capsys):
    run = _write_run(tmp_path / "seed1", {"hybrid": (1.0, 1.0), "baseline": (1.0, 1.0)})
    with pytest.raises(SystemExit):
        demo_seeds.main([str(run)])
    assert "no row for model(s) ['attention_only']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo_seeds.main([str(tmp_path / "missing")])
    assert "no report/results.json" in capsys.readouterr().err


def test_demo_seeds_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "demo_seeds.sh")], check=True)


STUB_DEMO = r'''#!/usr/bin/env bash
# scripts/demo.sh's stand-in: records its seeds, makes the stages a seed run leaves, and a report whose hybrid BLEU
# is the training seed (the baseline's 20): what the benchmark passes on and shares is what is tested.
set -euo pipefail
echo "$(basename "$WORK") SEED=$SEED TRAIN_SEED=${TRAIN_SEED:-unset}" >> "$CALLS"
[ -z "${BUDGETS:-}" ] || echo "$SUPERNET_RECIPE|$SUPERNET_FLAGS|$TRAIN_FLAGS" >> "$BUDGETS"
for dir in data supernet search search_attention rerank rerank_attention; do
  [ -e "$WORK/$dir" ] || { mkdir -p "$WORK/$dir"; echo "$SEED" > "$WORK/$dir/made_by_seed"; }
done
mkdir -p "$WORK/report"
bleu="${TRAIN_SEED:-$SEED}"
printf '[{"name": "%s", "sacrebleu": %s, "tokenized_bleu": 0, "energy_original_mj": 1, "energy_streaming_mj": 1}' \
  hybrid "$bleu" > "$WORK/report/results.json"
for model in attention_only baseline; do
  printf ', {"name": "%s", "sacrebleu": 20, "tokenized_bleu": 0, "energy_original_mj": 1, "energy_streaming_mj": 1}' \
    "$model" >> "$WORK/report/results.json"
done
echo "]" >> "$WORK/report/results.json"
'''


def _run_with_stub_demo(tmp_path, **env: str) -> None:
    """benchmarks/demo_seeds.sh in a copy of the repository whose scripts/demo.sh is ``STUB_DEMO``."""
    import shutil
    import sys

    repo = tmp_path / "repo"
    for path in ("benchmarks/demo_seeds.sh", "benchmarks/demo_seeds.py", "scripts/install.sh", "setup.py",
                 "examples/args.sh", "examples/multi30k_en_de/supernet_recipes.sh",
                 "examples/multi30k_en_de/supernet.args"):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, repo / path)  # setup.py and install.sh: the installed venv's stamp still matches
    (repo / "scripts" / "demo.sh").write_text(STUB_DEMO)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VENV": sys.prefix, "CALLS": str(tmp_path / "calls.txt"),
           "ROOT_WORK": str(tmp_path / "work"), **env}
    subprocess.run(["bash", str(repo / "benchmarks" / "demo_seeds.sh")], check=True, env=env, capture_output=True)


def test_demo_seeds_retrain_seeds_share_each_seeds_stages(tmp_path):
    """``RETRAIN_OFFSETS`` runs scripts/demo.sh again per seed N with ``TRAIN_SEED`` N + offset in ``seedN_trainT``,
    which links the seed's data and supernet and copies its searches and reranks; the summary averages all runs."""
    work, calls = tmp_path / "work", tmp_path / "calls.txt"
    _run_with_stub_demo(tmp_path, CALLS=str(calls), ROOT_WORK=str(work), SEEDS="1 2", RETRAIN_OFFSETS="10",
                        UPDATES="0")
    assert calls.read_text().splitlines() == ["seed1 SEED=1 TRAIN_SEED=unset", "seed1_train11 SEED=1 TRAIN_SEED=11",
                                              "seed2 SEED=2 TRAIN_SEED=unset", "seed2_train12 SEED=2 TRAIN_SEED=12"]
    for seed in (1, 2):
        retrain = work / f"seed{seed}_train{seed + 10}"
        for dir in ("data", "supernet"):
            assert (retrain / dir).is_symlink() and (retrain / dir).resolve() == (work / f"seed{seed}" / dir)
        for dir in ("search", "search_attention", "rerank", "rerank_attention"):
            assert not (retrain / dir).is_symlink() and (retrain / dir / "made_by_seed").read_text() == f"{seed}\n"
    summary = (work / "summary.md").read_text()
    assert "Over 4 runs" in summary
    assert "| hybrid | 6.50 ± 5.80 [1.00, 12.00] |" in summary  # the mean and sample std of 1, 11, 2, 12


@pytest.mark.parametrize("recipe, updates", [(None, 300), ("operators", 300), ("nosharing", 2000), ("single", 2000)])
def test_demo_seeds_budgets_the_supernet_by_its_recipe(tmp_path, recipe, updates):
    """The benchmark trains the operator sandwich unless SUPERNET_RECIPE says otherwise; a recipe that trains one
    subnet per update (the one that ranks subnets) gets 2,000 updates, a sandwich recipe 300; every model 450."""
    budgets = tmp_path / "budgets.txt"
    _run_with_stub_demo(tmp_path, SEEDS="1", BUDGETS=str(budgets), **({"SUPERNET_RECIPE": recipe} if recipe else {}))
    name, supernet_flags, train_flags = budgets.read_text().strip().split("|")
    assert name == (recipe or "operators")
    assert supernet_flags.split() == ["--max-update", str(updates)] and train_flags.split() == ["--max-update", "450"]
