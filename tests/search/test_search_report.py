"""Search outputs from a fake-fitness search: best.yaml / front files load as subnets, CSV rows, plot."""
import csv
import dataclasses
from pathlib import Path

import pytest

from fairseq_shiftadd.search import EvolutionarySearch, EvolutionConfig, TranslationDomain, parse_constraint
from fairseq_shiftadd.search.report import write_report
from fairseq_shiftadd.cost import Workload, read_workload_header, workload_header
from fairseq_shiftadd.space import BlockDetails, SpaceRecord, SubnetConfig, get_space, read_space_record

from test_search_engine import SMALL, CountingFitness, fake_metrics

TINY = TranslationDomain(get_space("tiny"))


def _run(pareto: tuple, constraints=()):
    config = EvolutionConfig(**SMALL, pareto_metrics=pareto)
    return EvolutionarySearch(TINY, config, CountingFitness(), fake_metrics, constraints, progress=False).run()


def test_single_objective_outputs(tmp_path: Path) -> None:
    constraint = parse_constraint("energy_mj<=4", ["energy_mj"])
    result = _run((), [constraint])
    paths = write_report(tmp_path, result, "loss", False, "energy_mj", [constraint])
    assert paths == [tmp_path / "best.yaml"]
    assert SubnetConfig.load(paths[0]) == result.best[0].subnet
    with open(tmp_path / "candidates.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.candidates)
    assert sum(1 for r in rows if r["loss"]) == result.evaluations
    assert {r["feasible"] for r in rows if not r["loss"]} <= {"0"}
    assert [SubnetConfig.from_json(r["subnet"]) for r in rows] == [c.subnet for c in result.candidates]
    assert (tmp_path / "search.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("pareto", [(), ("energy_mj",)])
def test_subnet_files_record_the_space_and_workload_they_were_searched_with(tmp_path: Path, pareto) -> None:
    """The records the search CLI passes (its workload, the supernet's space) are in best.yaml and every front file,
    read back as written, and the files still load as plain subnets."""
    space = dataclasses.replace(get_space("demo"), block_details=BlockDetails.COMPACT, two_branch_kernel_heads=2)
    workload = Workload(beam=1 if pareto else 5, vocab_size=8008, accounting="original" if pareto else "streaming")
    result = _run(pareto)
    records = (workload_header(workload, "45nm"), SpaceRecord.of(space).header())
    paths = write_report(tmp_path, result, "loss", bool(pareto), "energy_mj", records=records)
    assert len(paths) == len(result.best) >= 1
    for path, best in zip(paths, result.best):
        assert SubnetConfig.load(path) == best.subnet
        assert read_workload_header(path) == (workload, "45nm")
        record = read_space_record(str(path))
        assert record == SpaceRecord.of(space) and record.space() == space
        assert record.describe() == "space 'demo' (block_details 'compact', two_branch_kernel_heads 2)"


def test_pareto_outputs_replace_an_older_front(tmp_path: Path) -> None:
    (tmp_path / "front").mkdir()
    (tmp_path / "front" / "99.yaml").write_text("stale")
    result = _run(("energy_mj",))
    paths = write_report(tmp_path, result, "loss", True, "energy_mj")
    assert sorted(tmp_path.glob("front/*.yaml")) == paths and len(paths) == len(result.best)
    assert [SubnetConfig.load(p) for p in paths] == [c.subnet for c in result.best]
    assert all(read_space_record(str(p)) is None for p in paths)  # no records given: none written
    with open(tmp_path / "front.csv", newline="") as f:
        assert [r["file"] for r in csv.DictReader(f)] == [f"front/{i:02d}.yaml" for i in range(len(paths))]


def test_generations_csv_and_non_finite_fitness(tmp_path: Path) -> None:
    """generations.csv adds up to candidates.csv; NaN / inf fitness is written as such and still plots."""
    constraint = parse_constraint("energy_mj<=4", ["energy_mj"])

    def fitness(subs):
        values = CountingFitness()(subs)
        return [float("nan") if i % 3 == 0 else float("inf") if i % 3 == 1 else v for i, v in enumerate(values)]

    result = EvolutionarySearch(TINY, EvolutionConfig(**SMALL), fitness, fake_metrics, [constraint],
                                progress=False).run()
    write_report(tmp_path, result, "loss", False, "energy_mj", [constraint])
    with open(tmp_path / "generations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["generation"]) for r in rows] == list(range(SMALL["generations"]))
    assert sum(int(r["evaluations"]) for r in rows) == result.evaluations
    for row, stats in zip(rows, result.stats):
        assert int(row["feasible"]) <= int(row["draws"])
        assert float(row["acceptance"]) == pytest.approx(int(row["feasible"]) / int(row["draws"]))
        assert int(row["non_finite"]) == stats.non_finite
    with open(tmp_path / "candidates.csv", newline="") as f:
        losses = [r["loss"] for r in csv.DictReader(f) if r["loss"]]
    assert {"nan", "inf"} <= set(losses)
    assert sum(int(r["non_finite"]) for r in rows) == sum(v in ("nan", "inf") for v in losses)
    assert (tmp_path / "search.png").read_bytes()[:4] == b"\x89PNG"
