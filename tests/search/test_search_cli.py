"""``fairseq-shiftadd-search`` end to end on a tiny supernet trained on Multi30k (CPU): constraints met,
outputs, Pareto mode, BLEU fitness, resume, and 2 gloo processes giving the result of 1.

The supernet is the session's ``tiny_supernet`` (tests/conftest.py; shared with tests/test_supernet_task.py); the
constrained search runs by default, the other end-to-end runs are ``slow``."""
import csv
import json
import math
import random
import re
import statistics
from pathlib import Path
from typing import Callable, Dict, List

import pytest
from fairseq.data import Dictionary

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.search.pareto import dominates
from fairseq_shiftadd.space import SpaceRecord, SubnetConfig, get_space, largest, read_space_record, sample

TINY = get_space("tiny")
SMALL = ["--population", "12", "--parents", "4", "--mutations", "4", "--crossovers", "4"]


@pytest.fixture
def search(run_cli, multi30k_en_de: Path, tiny_supernet: Path) -> Callable[..., str]:
    """``search(out_dir, *extra_args)``: the search CLI on the tiny supernet, small population, 64 sentences."""

    def run(out: Path, *extra: str) -> str:
        return run_cli(
            "fairseq-shiftadd-search", str(multi30k_en_de), "--user-dir", "fairseq_shiftadd", "--path",
            str(tiny_supernet), "--save-dir", str(out), "--cpu", "--batch-size", "32", "--max-valid-sentences", "64",
            "--seed", "3", *SMALL, *extra,
        )

    return run


def _rows(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_search(a: Path, b: Path) -> None:
    """Same candidates in the same order with the same metrics and best subnet; the losses may differ by float32
    noise (a subnet's validation loss varies by ~1e-7 relative with the process's memory layout)."""
    rows_a, rows_b = _rows(a / "candidates.csv"), _rows(b / "candidates.csv")
    assert [{k: v for k, v in r.items() if k != "loss"} for r in rows_a] == \
        [{k: v for k, v in r.items() if k != "loss"} for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        assert (ra["loss"] == rb["loss"] == "") or float(ra["loss"]) == pytest.approx(float(rb["loss"]), rel=1e-6)
    assert SubnetConfig.load(a / "best.yaml") == SubnetConfig.load(b / "best.yaml")


def _cost_model(data: Path) -> CostModel:
    """The search's default costed sentence: the data's vocabulary, fairseq's default --beam (5)."""
    vocab = len(Dictionary.load(str(data / "dict.de.txt")))
    return CostModel(TINY, "45nm", Workload(vocab_size=vocab, beam=5))


def test_search_meets_every_constraint(search, multi30k_en_de: Path, tiny_supernet: Path, tmp_path: Path,
                                      capsys) -> None:
    cm = _cost_model(multi30k_en_de)
    energy = statistics.median(cm.metrics(sample(TINY, random.Random(i)))["energy_mj"] for i in range(200))
    params = cm.metrics(largest(TINY))["params"] * 0.9
    log = search(tmp_path, "--generations", "3",
                  "--constraint", f"energy_mj<={energy}", "--constraint", f"params<{params}")
    best = SubnetConfig.load(tmp_path / "best.yaml")
    metrics = cm.metrics(best)
    assert metrics["energy_mj"] <= energy and metrics["params"] < params
    rows = _rows(tmp_path / "candidates.csv")
    evaluated = [r for r in rows if r["loss"]]
    assert any(r["feasible"] == "0" for r in rows)  # the constraints did reject proposals
    assert all(r["feasible"] == "1" for r in evaluated)
    losses = [float(r["loss"]) for r in evaluated]
    assert len(set(losses)) > 1 and all(0 < v < 20 for v in losses)
    best_row = min(evaluated, key=lambda r: float(r["loss"]))
    assert SubnetConfig.from_json(best_row["subnet"]) == best
    assert (tmp_path / "search.png").stat().st_size > 0 and (tmp_path / "state.json").is_file()
    assert re.search(rf"{len(evaluated)} evaluations .* candidates/min; [0-9.]+ % of [0-9]+ draws met the constraints",
                     log)
    generations = _rows(tmp_path / "generations.csv")
    assert [int(r["generation"]) for r in generations] == [0, 1, 2]
    assert sum(int(r["evaluations"]) for r in generations) == len(evaluated)
    assert all(0 < float(r["acceptance"]) <= 1 for r in generations)
    assert float(generations[0]["acceptance"]) < 1  # the constraints bit generation 0's uniform draws
    assert re.search(r"generation 1/3: \d+ evaluations .*\(acceptance [0-9.]+ %\)", log)
    # best.yaml records the supernet's space; fairseq-shiftadd-cost reproduces its metrics from its recorded space
    # and workload, without flags (issue #11)
    from fairseq_shiftadd.cost.cli import main as cost_main
    from fairseq_shiftadd.models.space_record import checkpoint_space

    assert read_space_record(str(tmp_path / "best.yaml")) == SpaceRecord.of(checkpoint_space(tiny_supernet))
    cost_main(["--subnet", str(tmp_path / "best.yaml"), "--json"])
    costed = json.loads(capsys.readouterr().out)
    assert costed["metrics"]["energy_mj"] == pytest.approx(float(best_row["energy_mj"]), rel=1e-12)
    assert costed["metrics"] == pytest.approx(metrics) and costed["workload"]["beam"] == 5



def test_initial_subnet_opens_generation_0(search, tiny_supernet: Path, tmp_path: Path) -> None:
    """--initial-subnet FILE (a subnet file with its recorded space, as a search writes its best.yaml): generation 0
    starts with it, and the search's best is at least as fit."""
    from fairseq_shiftadd.models.space_record import checkpoint_space

    warm = tmp_path / "warm.yaml"
    header = SpaceRecord.of(checkpoint_space(tiny_supernet)).header()
    warm.write_text(f"{header}\n{sample(TINY, random.Random(5)).to_yaml()}", encoding="utf-8")
    search(tmp_path / "warm", "--generations", "1", "--initial-subnet", str(warm), "--initial-subnet", "largest")
    rows = _rows(tmp_path / "warm" / "candidates.csv")
    assert [SubnetConfig.from_json(r["subnet"]) for r in rows[:2]] == [SubnetConfig.load(warm), largest(TINY)]
    assert all(r["generation"] == "0" and r["loss"] for r in rows[:2])
    assert min(float(r["loss"]) for r in rows if r["loss"]) <= float(rows[0]["loss"])
    assert SubnetConfig.load(tmp_path / "warm" / "best.yaml") == SubnetConfig.from_json(
        min((r for r in rows if r["loss"]), key=lambda r: float(r["loss"]))["subnet"])


@pytest.mark.slow
def test_multi_objective_front(search, multi30k_en_de: Path, tmp_path: Path) -> None:
    search(tmp_path, "--generations", "2", "--multi-objective", "energy_mj")
    front = _rows(tmp_path / "front.csv")
    assert len(front) >= 2
    evaluated = [r for r in _rows(tmp_path / "candidates.csv") if r["loss"]]
    points = [(float(r["loss"]), float(r["energy_mj"])) for r in evaluated]
    for row in front:
        SubnetConfig.load(tmp_path / row["file"])  # ready for retraining
        point = (float(row["loss"]), float(row["energy_mj"]))
        assert point in points and not any(dominates(p, point) for p in points)
    assert not (tmp_path / "best.yaml").exists()


@pytest.mark.slow
def test_bleu_fitness(run_cli, multi30k_en_de: Path, tiny_supernet: Path, tmp_path: Path) -> None:
    run_cli(
        "fairseq-shiftadd-search", str(multi30k_en_de), "--user-dir", "fairseq_shiftadd", "--path",
        str(tiny_supernet), "--save-dir", str(tmp_path), "--cpu", "--batch-size", "16", "--max-valid-sentences",
        "16", "--objective", "bleu", "--beam", "1", "--max-len-b", "20", "--post-process", "sentencepiece",
        "--population", "3", "--parents", "1", "--mutations", "1", "--crossovers", "1", "--generations", "1",
    )
    rows = _rows(tmp_path / "candidates.csv")
    bleu = [float(r["bleu"]) for r in rows]
    assert len(bleu) == 3 and all(math.isfinite(b) for b in bleu)
    best = [SubnetConfig.from_json(r["subnet"]) for r in rows if float(r["bleu"]) == max(bleu)]
    assert SubnetConfig.load(tmp_path / "best.yaml") in best  # BLEU is maximised, not minimised like a loss


@pytest.mark.slow
def test_resume_continues_to_the_uninterrupted_result(search, tmp_path: Path) -> None:
    search(tmp_path / "full", "--generations", "2")
    search(tmp_path / "resumed", "--generations", "1")  # "killed" after one
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["generation"] == 1
    log = search(tmp_path / "resumed", "--generations", "2")
    assert "resuming" in log
    first = len([c for c in state["candidates"] if c["fitness"] is not None])
    total = len([r for r in _rows(tmp_path / "resumed" / "candidates.csv") if r["loss"]])
    assert re.search(rf"{total} evaluations \({total - first} in this run", log)
    assert_same_search(tmp_path / "resumed", tmp_path / "full")


@pytest.mark.slow
def test_two_processes_give_the_result_of_one(search, multi30k_en_de: Path, tmp_path: Path) -> None:
    search(tmp_path / "one", "--generations", "2")
    log = search(tmp_path / "two", "--generations", "2",
                  "--distributed-world-size", "2")
    assert "2 ranks" in log
    assert len(re.findall(r"generation 2/2:", log)) == 1  # rank 0 reports; rank 1 logs warnings only
    assert_same_search(tmp_path / "two", tmp_path / "one")
