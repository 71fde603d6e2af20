"""The evolutionary search engine with a fake fitness (no fairseq): constraints, elitism, Pareto, cache,
determinism and resume."""
import random
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.search import EvolutionarySearch, EvolutionConfig, TranslationDomain, parse_constraint
from fairseq_shiftadd.search.pareto import dominates, nsga2_select, non_dominated_sort, pareto_front
from fairseq_shiftadd.space import SubnetConfig, get_space, largest, smallest

TINY = get_space("tiny")
SMALL = dict(population=12, parents=4, mutations=4, crossovers=4, generations=4)


def fake_metrics(sub: SubnetConfig) -> Dict[str, float]:
    """A monotone size proxy: wider / deeper / multiplicative subnets cost more."""
    layers = sub.encoder + sub.decoder
    size = sum(layer.ffn_dim * (2 if layer.ffn_op is OpKind.MULT else 1) for layer in layers)
    return {"energy_mj": size / 1000 + (sub.encoder_embed_dim + sub.decoder_embed_dim) / 100,
            "params": float(len(layers))}


def fake_loss(sub: SubnetConfig) -> float:
    """Bigger is better (a loss that trades off against energy), plus a deterministic per-subnet jitter."""
    return 10.0 / fake_metrics(sub)["energy_mj"] + random.Random(sub.to_json()).random() * 0.1


class CountingFitness:
    def __init__(self, fail_after_calls: int = -1) -> None:
        self.seen: List[SubnetConfig] = []
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def __call__(self, subs: Sequence[SubnetConfig]) -> List[float]:
        if self.calls == self.fail_after_calls:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.seen.extend(subs)
        return [fake_loss(s) for s in subs]


def _search(tmp: Path = None, fitness=None, constraints=(), **overrides) -> EvolutionarySearch:
    config = EvolutionConfig(**{**SMALL, **overrides})
    return EvolutionarySearch(TranslationDomain(TINY), config, fitness or CountingFitness(), fake_metrics, constraints,
                              state_path=None if tmp is None else tmp / "state.json", progress=False)


def test_constraints_are_honoured_and_elitism_keeps_the_best() -> None:
    bound = (fake_metrics(smallest(TINY))["energy_mj"] + fake_metrics(largest(TINY))["energy_mj"]) / 2
    constraints = [parse_constraint(f"energy_mj <= {bound}", ["energy_mj", "params"]),
                   parse_constraint("params>=3", ["energy_mj", "params"])]
    result = _search(constraints=constraints).run()
    assert any(not c.feasible for c in result.candidates)  # the bound does bite
    for population in result.populations:
        for i in population:
            c = result.candidates[i]
            assert c.feasible and c.metrics["energy_mj"] <= bound and c.metrics["params"] >= 3
    best_per_generation = [min(result.candidates[i].fitness for i in pop) for pop in result.populations]
    assert best_per_generation == sorted(best_per_generation, reverse=True)
    assert best_per_generation[-1] < best_per_generation[0]
    assert result.best[0].fitness == min(c.fitness for c in result.candidates if c.fitness is not None)
    assert all(c.fitness is None for c in result.candidates if not c.feasible)


def test_cache_evaluates_each_subnet_once() -> None:
    fitness = CountingFitness()
    result = _search(fitness=fitness, mutation_prob=0.05).run()
    assert len(fitness.seen) == len(set(fitness.seen)) == result.evaluations
    population_members = [result.candidates[i].subnet for pop in result.populations for i in pop]
    assert len(population_members) > len(set(population_members))  # repeats existed and were not re-evaluated


def test_deterministic_under_seed() -> None:
    a, b, c = _search(seed=3).run(), _search(seed=3).run(), _search(seed=4).run()
    assert [x.to_dict() for x in a.candidates] == [x.to_dict() for x in b.candidates]
    assert [x.to_dict() for x in a.candidates] != [x.to_dict() for x in c.candidates]


def test_pareto_mode_returns_a_non_dominated_front() -> None:
    result = _search(pareto_metrics=("energy_mj",), generations=5).run()
    evaluated = [c for c in result.candidates if c.fitness is not None]
    front = result.best
    assert len(front) >= 3
    assert [c.metrics["energy_mj"] for c in front] == sorted(c.metrics["energy_mj"] for c in front)
    for member in front:
        point = (member.fitness, member.metrics["energy_mj"])
        assert not any(dominates((c.fitness, c.metrics["energy_mj"]), point) for c in evaluated)
    for c in evaluated:  # everything off the front is dominated by some member
        if c not in front:
            assert any(dominates((m.fitness, m.metrics["energy_mj"]), (c.fitness, c.metrics["energy_mj"]))
                       or (m.fitness, m.metrics["energy_mj"]) == (c.fitness, c.metrics["energy_mj"])
                       for m in front)


def test_pareto_tools_against_brute_force() -> None:
    rng = random.Random(0)
    points = [(rng.randint(0, 6), rng.randint(0, 6), rng.randint(0, 3)) for _ in range(40)]
    fronts = non_dominated_sort(points)
    assert sorted(i for f in fronts for i in f) == list(range(len(points)))
    removed: set = set()
    for front in fronts:
        rest = [i for i in range(len(points)) if i not in removed]
        expected = [i for i in rest if not any(dominates(points[j], points[i]) for j in rest)]
        assert sorted(front) == expected
        removed.update(front)
    assert pareto_front(points) == fronts[0]
    chosen = nsga2_select(points, 10)
    assert len(chosen) == len(set(chosen)) == 10
    rank = {i: r for r, front in enumerate(fronts) for i in front}
    assert max(rank[i] for i in chosen) <= min(rank[i] for i in range(len(points)) if i not in chosen)


def test_resume_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    uninterrupted = _search(tmp_path / "a", generations=3).run()
    # generations=1, then restart asking for 3
    _search(tmp_path / "b", generations=1).run()
    fitness = CountingFitness()
    resumed = _search(tmp_path / "b", fitness=fitness, generations=3).run()
    assert resumed.new_evaluations == len(fitness.seen) < resumed.evaluations
    assert not set(fitness.seen) & {c.subnet for c in resumed.candidates if c.generation == 0}
    # killed inside generation 3 (the third fitness call), then restarted
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "c", fitness=CountingFitness(fail_after_calls=2), generations=3).run()
    restarted = _search(tmp_path / "c", generations=3).run()
    for other in (resumed, restarted):
        assert [x.to_dict() for x in other.candidates] == [x.to_dict() for x in uninterrupted.candidates]
        assert other.populations == uninterrupted.populations
        assert other.best == uninterrupted.best
        assert other.evaluations == uninterrupted.evaluations


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    _search(tmp_path, generations=1).run()
    with pytest.raises(ValueError, match="other settings"):
        _search(tmp_path, generations=2, mutation_prob=0.5).run()


def test_infeasible_constraints_fail_clearly() -> None:
    impossible = parse_constraint("energy_mj<0", ["energy_mj"])
    with pytest.raises(RuntimeError, match=r"energy_mj<0.*in 50 draws"):
        _search(constraints=[impossible], max_rejections=50).run()


def test_constraint_parsing_errors() -> None:
    c = parse_constraint(" energy_mj >= 2.5e-1 ", ["energy_mj"])
    assert (c.metric, c.op, c.bound) == ("energy_mj", ">=", 0.25)
    assert c.holds({"energy_mj": 0.25}) and not c.holds({"energy_mj": 0.2})
    with pytest.raises(ValueError, match=r"'latency' not in allowed values \('energy_mj', 'params'\)"):
        parse_constraint("latency<3", ["energy_mj", "params"])
    with pytest.raises(ValueError, match="must look like"):
        parse_constraint("energy_mj == 3", ["energy_mj"])
    with pytest.raises(ValueError, match="not a number"):
        parse_constraint("energy_mj<=abc", ["energy_mj"])


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="must equal parents \\+ mutations \\+ crossovers"):
        EvolutionConfig(population=10, parents=4, mutations=4, crossovers=4)
    with pytest.raises(ValueError, match="fitness='ppl' not in allowed values"):
        EvolutionConfig(fitness="ppl")
    with pytest.raises(ValueError, match="mutation_prob"):
        EvolutionConfig(mutation_prob=1.5)
