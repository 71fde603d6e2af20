"""The evolutionary search engine with a fake fitness (no fairseq): constraints, elitism, Pareto, cache,
determinism, resume, non-finite fitness, tie-safe selection, staged metrics, the adaptive rejection budget
and the repair walk."""
import math
import random
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.search import EvolutionarySearch, EvolutionConfig, TranslationDomain, parse_constraint
from fairseq_shiftadd.search.evolution import _rejection_budget
from fairseq_shiftadd.search.pareto import dominates, nsga2_select, non_dominated_sort, pareto_front
from fairseq_shiftadd.search.state import SearchState, fingerprint_diff
from fairseq_shiftadd.space import SubnetConfig, get_space, largest, sample, smallest

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


def _search(tmp: Path = None, fitness=None, constraints=(), metrics=fake_metrics, settings=None, initial=(),
            **overrides) -> EvolutionarySearch:
    config = EvolutionConfig(**{**SMALL, **overrides})
    return EvolutionarySearch(TranslationDomain(TINY), config, fitness or CountingFitness(), metrics, constraints,
                              state_path=None if tmp is None else tmp / "state.json", progress=False,
                              settings=settings, initial=initial)


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


def test_resume_refuses_other_settings_naming_each_difference(tmp_path: Path) -> None:
    _search(tmp_path, generations=1, settings={"--path": "a.pt", "workload": {"beam": 1}}).run()
    _search(tmp_path, generations=2, settings={"--path": "a.pt", "workload": {"beam": 1}}).run()  # same: resumes
    with pytest.raises(ValueError) as err:
        _search(tmp_path, generations=3, mutation_prob=0.5,
                settings={"--path": "b.pt", "workload": {"beam": 4}, "accounting": "original"}).run()
    message = str(err.value)
    assert "\n" not in message and "other settings" in message
    for line in ("config.mutation_prob: 0.3 -> 0.5", 'settings.--path: "a.pt" -> "b.pt"',
                 "settings.workload.beam: 1 -> 4", 'settings.accounting: (unset) -> "original"'):
        assert line in message
    assert "generations" not in message  # more generations is not a change of settings


def test_initial_subnets_open_generation_0_and_the_best_is_at_least_as_fit(tmp_path: Path) -> None:
    """A warm start: the initial subnets are generation 0's first members, evaluated; elitism keeps the best at
    least as fit as each; they are part of the resume fingerprint; bad ones are refused in one line."""
    rng = random.Random(7)
    pool = sorted({sample(TINY, rng) for _ in range(200)}, key=fake_loss)
    warm = [pool[0], pool[1]]  # the fittest of 200 draws: better than random generation-0 members
    fitness = CountingFitness()
    result = _search(tmp_path, fitness=fitness, initial=warm, generations=2).run()
    first = [result.candidates[i].subnet for i in result.populations[0]]
    assert first[:2] == warm and len(first) == SMALL["population"]
    assert set(warm) <= set(fitness.seen[:SMALL["population"]])
    assert result.best[0].fitness <= min(fake_loss(s) for s in warm)
    assert result.stats[0].draws == SMALL["population"] - len(warm)  # chosen, not drawn: out of the acceptance
    cold = _search(generations=2).run()
    assert [cold.candidates[i].subnet for i in cold.populations[0]][:2] != warm
    with pytest.raises(ValueError, match="initial"):  # resuming without the warm start is another search
        _search(tmp_path, generations=3).run()
    _search(tmp_path, initial=warm, generations=3).run()  # the same warm start resumes
    with pytest.raises(ValueError, match="exceed the population"):
        _search(initial=pool[:SMALL["population"] + 1])
    with pytest.raises(ValueError, match="repeat"):
        _search(initial=[warm[0], warm[0]])
    big = largest(TINY)
    bound = fake_metrics(big)["energy_mj"] - 1e-6
    constraints = [parse_constraint(f"energy_mj<={bound}", ["energy_mj", "params"])]
    with pytest.raises(ValueError) as err:
        _search(initial=[big], constraints=constraints).run()
    assert "\n" not in str(err.value) and f"violates energy_mj<={bound:g} (energy_mj " in str(err.value)


def test_fingerprint_diff() -> None:
    assert fingerprint_diff({"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": [1, 2]}}) == []
    assert fingerprint_diff({"a": 1, "b": {"c": 2}}, {"b": {"c": 3}, "d": None}) == \
        ["b.c: 2 -> 3", "d: (unset) -> null", "a: 1 -> (unset)"]


def test_non_finite_fitness_ranks_worst_and_is_recorded(tmp_path: Path) -> None:
    """NaN for an add FFN in encoder layer 0, -inf for a 2-layer decoder: a loss of -inf would win naively."""

    def fitness(subs):
        out = []
        for s in subs:
            if s.encoder[0].ffn_op is OpKind.ADD:
                out.append(math.nan)
            elif len(s.decoder) == 2:
                out.append(-math.inf)
            else:
                out.append(fake_loss(s))
        return out

    for pareto in ((), ("energy_mj",)):
        search = _search(tmp_path / str(len(pareto)), fitness=fitness, pareto_metrics=pareto)
        result = search.run()
        finite = [c for c in result.candidates if c.fitness is not None and math.isfinite(c.fitness)]
        broken = [c for c in result.candidates if c.fitness is not None and not math.isfinite(c.fitness)]
        assert finite and broken and sum(s.non_finite for s in result.stats) == len(broken)
        assert all(math.isfinite(c.fitness) for c in result.best)
        if not pareto:
            assert result.best[0].fitness == min(c.fitness for c in finite)
        population = [result.candidates[i].subnet for i in result.populations[-1]]
        parents = search._select(population)
        ranked = [search.candidates[search._index[p]] for p in parents]
        finite_in_population = {s for s in population if math.isfinite(search.candidates[search._index[s]].fitness)}
        # non-finite parents only when there are not enough finite ones, and after all of them
        flags = [math.isfinite(c.fitness) for c in ranked]
        assert flags == sorted(flags, reverse=True)
        assert sum(flags) == min(len(finite_in_population), len(parents))
        state = SearchState.load(tmp_path / str(len(pareto)) / "state.json", SubnetConfig.from_dict)
        saved = [c.fitness for c in state.candidates if c.fitness is not None]
        assert sum(math.isnan(v) for v in saved) > 0 and -math.inf in saved  # recorded as they were

    with pytest.raises(RuntimeError, match="every evaluated subnet has a NaN or infinite fitness"):
        _search(fitness=lambda subs: [math.nan] * len(subs)).run()


def test_selection_is_a_total_order_independent_of_population_order() -> None:
    """Many ties (fitness = decoder depth): parents do not depend on the order the population came in, as
    when N ranks gather results or a resumed run rebuilds its population."""
    for pareto in ((), ("energy_mj",)):
        search = _search(fitness=lambda subs: [float(len(s.decoder)) for s in subs], pareto_metrics=pareto,
                         generations=1)
        result = search.run()
        population = [c.subnet for c in result.candidates if c.fitness is not None]
        expected = search._select(population)
        for seed in range(5):
            shuffled = list(population)
            random.Random(seed).shuffle(shuffled)
            assert search._select(shuffled) == expected
        if not pareto:  # the tie-break is the canonical JSON
            records = [search.candidates[search._index[p]] for p in expected]
            assert [(c.fitness, c.key) for c in records] == sorted((c.fitness, c.key) for c in records)


def test_staged_metrics_stop_at_the_first_violated_constraint() -> None:
    expensive_calls: List[SubnetConfig] = []

    def expensive(sub: SubnetConfig) -> Dict[str, float]:
        expensive_calls.append(sub)
        return {"latency_ms": fake_metrics(sub)["energy_mj"] * 2}

    constraints = [parse_constraint("energy_mj<=3.5", ["energy_mj", "latency_ms"]),
                   parse_constraint("latency_ms<=6.5", ["energy_mj", "latency_ms"])]
    result = _search(metrics=[fake_metrics, expensive], constraints=constraints).run()
    cheap_ok = [c for c in result.candidates if c.metrics["energy_mj"] <= 3.5]
    assert len(expensive_calls) == len(set(expensive_calls)) == len(cheap_ok) < len(result.candidates)
    for c in result.candidates:
        assert ("latency_ms" in c.metrics) == (c.metrics["energy_mj"] <= 3.5)
        assert c.feasible == (c.metrics["energy_mj"] <= 3.5 and c.metrics["latency_ms"] <= 6.5)
    assert any(not c.feasible and "latency_ms" in c.metrics for c in result.candidates)  # stage 2 bit too


def test_rejection_budget_adapts_to_the_acceptance_rate() -> None:
    assert _rejection_budget(0, 0, 1000) == 7  # p = 1/2: 1 - 0.5**7 >= 0.99
    assert _rejection_budget(98, 0, 1000) == 459  # p = 1/100
    assert _rejection_budget(10_000, 0, 1000) == 1000  # capped
    assert _rejection_budget(1000, 999, 1000) == 1
    for draws, feasible in ((10, 3), (500, 7)):
        p = (feasible + 1) / (draws + 2)
        n = _rejection_budget(draws, feasible, 10**9)
        assert 1 - (1 - p) ** n >= 0.99 > 1 - (1 - p) ** (n - 1)


def test_tight_constraint_fills_every_generation_by_repair() -> None:
    """energy_mj <= 2.2 accepts about 0.5 % of uniform draws of the tiny space: rejection sampling within the
    adaptive budget, then the repair walk, seed a feasible generation 0 and keep every generation feasible."""
    tight = parse_constraint("energy_mj<=2.2", ["energy_mj"])
    uniform = [fake_metrics(sample(TINY, random.Random(i)))["energy_mj"] <= 2.2 for i in range(4000)]
    assert 0 < sum(uniform) / len(uniform) < 0.01
    result = _search(constraints=[tight], max_draws=60).run()
    for population in result.populations:
        assert len(population) == SMALL["population"]
        assert all(result.candidates[i].metrics["energy_mj"] <= 2.2 for i in population)
    first = result.stats[0]
    assert first.repaired > 0 and first.feasible >= SMALL["population"]
    rate = sum(uniform) / len(uniform)
    assert first.draws < SMALL["population"] / rate  # fewer than pure rejection sampling needs on average
    assert result.acceptance == sum(s.feasible for s in result.stats) / sum(s.draws for s in result.stats)


def test_infeasible_constraints_fail_clearly() -> None:
    impossible = parse_constraint("energy_mj<0", ["energy_mj"])
    with pytest.raises(RuntimeError, match=r"met the constraints \(energy_mj<0\): \d+ draws and two repair walks of "
                                           r"50 mutations failed \(closest: energy_mj="):
        _search(constraints=[impossible], max_draws=50).run()


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
