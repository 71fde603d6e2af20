"""Evolutionary search over a :class:`~.domain.SearchDomain` (ShiftAddNAS, arXiv 2205.08119; HAT).

One generation, as in the paper (population 125 = 25 parents + 50 mutations + 50 crossovers):

1. evaluate the population's fitness (validation loss, or BLEU, of each subnet with inherited weights); a
   cache evaluates each distinct subnet once, and the fitness callable gets a *batch* (it may split it across
   ranks). A NaN or infinite fitness is recorded as such and ranks below every finite one;
2. select the parents: the ``parents`` best distinct subnets (elitist), or in Pareto mode (``pareto_metrics``)
   by NSGA-II rank and crowding distance on (fitness, metrics...). Every ranking is a total order (the
   subnet's canonical JSON breaks ties), so 1 rank, N ranks and a resumed run pick the same parents;
3. breed the next population: the parents, ``mutations`` mutants of random parents (each gene redrawn with
   probability ``mutation_prob``) and ``crossovers`` uniform crossovers of two random parents.

Warm start. ``initial`` subnets (e.g. the winner of a search of a sub-space, such as the attention-only winner
for a hybrid search) open generation 0, before its random draws. Selection is elitist, so the search's best is
then at least as fit as each of them. The paper starts from random subnets only.

Constraints. Every member of a population (the initial random one too) meets the constraints. A proposal
is first rejection-sampled (the paper's rule) within an adaptive budget: the number of draws that finds a
feasible one with 99 % probability at the acceptance rate observed so far for that kind of proposal
(Laplace estimate ``(feasible + 1) / (draws + 2)``), at most ``max_draws``, and at most the draws a repair
walk has needed on average so far. When the budget runs out (a tight constraint), a *repair walk* starts
from the least violating draw: up to ``max_draws`` mutations, each kept when its violation
(:meth:`~.constraints.Constraint.violation`, summed; constraints not yet evaluated count first) is no
larger, until one is feasible; a failed walk is retried once after ``max_draws`` more draws, then the search
stops. This deviates from the paper, which only rejection-samples: repaired subnets lean toward the
constraint's boundary, and the tighter the constraint, the larger their share. Metrics come in stages,
cheapest first (e.g. the cost model, then a latency predictor, then a measured latency); a stage runs only
if every constraint on the earlier stages' metrics holds. Each generation logs its draws and acceptance rate.

All randomness comes from one ``random.Random(seed)``. After each finished generation the state is written
(:class:`~.state.SearchState`); a restarted search continues from it and reaches the same result as an
uninterrupted one. This module needs no fairseq.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..progress import progress
from .constraints import Constraint
from .domain import Config, SearchDomain
from .pareto import nsga2_select, pareto_front
from .state import Candidate, GenerationStats, SearchState, config_key, refuse_other_settings

logger = logging.getLogger(__name__)

__all__ = [
    "FITNESS_SENSE",
    "EvolutionConfig",
    "SearchResult",
    "EvolutionarySearch",
    "BatchFitness",
    "MetricsFn",
    "search_fingerprint",
]

BatchFitness = Callable[[Sequence[Config]], Sequence[float]]
"""Fitness of a batch of subnets, in order."""
MetricsFn = Callable[[Config], Mapping[str, float]]
"""Cost metrics of one subnet (``energy_mj``, ``params``, ...): one stage of the metrics."""

FITNESS_SENSE: Dict[str, float] = {"loss": 1.0, "bleu": -1.0}
"""Sign that turns each fitness into a quantity to minimise (loss is minimised, BLEU maximised)."""

MIN_REPAIR_PROB = 0.01
"""Smallest mutation probability of a repair walk's steps."""

SUCCESS_PROBABILITY = 0.99
"""The adaptive rejection budget finds a feasible proposal with this probability at the observed acceptance."""


@dataclass(frozen=True)
class EvolutionConfig:
    """Search hyperparameters (defaults: the paper's).

    Args:
        population: size of the random initial population; must equal ``parents + mutations + crossovers``.
        parents: distinct subnets kept per generation (elitism).
        mutations, crossovers: children bred per generation.
        mutation_prob: probability that a mutation redraws each gene.
        generations: evaluated populations (iterations).
        seed: seed of the search's ``random.Random``.
        max_draws: cap of the adaptive rejection budget per proposal, and of a repair walk's steps (see the
            module docstring); the search gives up when a proposal's second repair walk fails.
        fitness: ``"loss"`` (minimised) or ``"bleu"`` (maximised).
        pareto_metrics: cost metrics minimised jointly with the fitness; non-empty selects the multi-objective
            (NSGA-II) mode, whose result is the Pareto front.

    Raises:
        ValueError: a value out of range (one line naming the field).
    """

    population: int = 125
    parents: int = 25
    mutations: int = 50
    crossovers: int = 50
    mutation_prob: float = 0.3
    generations: int = 20
    seed: int = 1
    max_draws: int = 1000
    fitness: str = "loss"
    pareto_metrics: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("population", "parents", "generations", "max_draws"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("mutations", "crossovers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.population != self.parents + self.mutations + self.crossovers:
            raise ValueError(
                f"population={self.population} must equal parents + mutations + crossovers "
                f"= {self.parents} + {self.mutations} + {self.crossovers}"
            )
        if not 0.0 <= self.mutation_prob <= 1.0:
            raise ValueError(f"mutation_prob={self.mutation_prob} must be in [0, 1]")
        if self.fitness not in FITNESS_SENSE:
            raise ValueError(f"fitness={self.fitness!r} not in allowed values {tuple(FITNESS_SENSE)}")
        if len(set(self.pareto_metrics)) != len(self.pareto_metrics):
            raise ValueError(f"pareto_metrics={self.pareto_metrics} has duplicates")

    def fingerprint(self) -> Dict[str, object]:
        """The settings a resumed search must share: all but ``generations``."""
        data = dataclasses.asdict(self)
        del data["generations"]
        data["pareto_metrics"] = list(self.pareto_metrics)
        return data


@dataclass
class SearchResult:
    """What a search returns.

    Args:
        best: single objective: ``[the best subnet]``; Pareto mode: the front over every evaluated subnet with a
            finite fitness, sorted by the Pareto metrics.
        candidates: every proposed subnet in order of first proposal (rejected ones have ``fitness=None``).
        populations: per generation, the population as indices into ``candidates``.
        evaluations: distinct subnets whose fitness was evaluated, over the whole (possibly resumed) search.
        new_evaluations: of those, the ones evaluated by this run.
        stats: per generation, its draws, acceptance and evaluations (:class:`~.state.GenerationStats`).
    """

    best: List[Candidate]
    candidates: List[Candidate]
    populations: List[List[int]]
    evaluations: int
    new_evaluations: int
    stats: List[GenerationStats]

    @property
    def acceptance(self) -> float:
        """Share of all draws, over every generation, that met the constraints."""
        draws = sum(s.draws for s in self.stats)
        return sum(s.feasible for s in self.stats) / draws if draws else 1.0


def search_fingerprint(
    config: EvolutionConfig,
    constraints: Sequence[Constraint],
    settings: Mapping[str, Any],
    space: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The resume fingerprint (normalised through JSON, as it is read back): the configuration but for the
    number of generations, the constraints, the caller's ``settings`` and, if given, the space's definition."""
    data: Dict[str, Any] = {
        "config": config.fingerprint(),
        "constraints": [str(c) for c in constraints],
        "settings": dict(settings),
    }
    if space is not None:
        data["space"] = space
    return json.loads(json.dumps(data))


def _rejection_budget(draws: int, feasible: int, cap: int) -> int:
    """Draws that find a feasible proposal with :data:`SUCCESS_PROBABILITY` at the Laplace estimate of the
    acceptance rate, ``p = (feasible + 1) / (draws + 2)``: ``ceil(log(1 - P) / log(1 - p))``, at most ``cap``."""
    p = (feasible + 1) / (draws + 2)
    return max(1, min(cap, math.ceil(math.log(1 - SUCCESS_PROBABILITY) / math.log1p(-p))))


class EvolutionarySearch:
    """The evolutionary search; :meth:`run` returns a :class:`SearchResult`.

    Args:
        domain: the search space (translation or vision subnets).
        config: the hyperparameters.
        fitness: evaluates a batch of subnets (every rank must call it with the same batch if it is distributed).
        metrics: cost metrics of a subnet: one function, or a sequence of stages, cheapest first (a stage runs
            only while the constraints on earlier stages' metrics hold). A feasible subnet has every stage's
            metrics, which must include every constrained and every Pareto metric.
        constraints: all must hold for a subnet to enter a population.
        state_path: where the state is saved after each generation and resumed from (``None``: no state). A
            state written with other settings is refused (``ValueError`` naming each difference): delete it,
            or use another path, to start over.
        write_state: whether this process writes the state (rank 0 only); every process reads it.
        progress: show a progress bar with the current best.
        settings: further settings that shape the fitness or the metrics (checkpoint, data, workload, ...),
            JSON-serialisable; part of the resume fingerprint.
        initial: distinct subnets of ``domain`` that open generation 0 (a warm start, see the module docstring);
            at most ``config.population``; each must meet the constraints. Part of the resume fingerprint.

    Raises:
        ValueError: more initial subnets than the population, or repeated ones (at :meth:`run`: one that violates
            a constraint, naming it).
    """

    def __init__(
        self,
        domain: SearchDomain,
        config: EvolutionConfig,
        fitness: BatchFitness,
        metrics: Union[MetricsFn, Sequence[MetricsFn]],
        constraints: Sequence[Constraint] = (),
        state_path: Optional[Path] = None,
        write_state: bool = True,
        progress: bool = True,
        settings: Optional[Mapping[str, Any]] = None,
        initial: Sequence[Config] = (),
    ) -> None:
        if len(initial) > config.population:
            raise ValueError(f"{len(initial)} initial subnets exceed the population ({config.population})")
        if len(set(initial)) != len(initial):
            raise ValueError("the initial subnets repeat a subnet")
        self.initial = tuple(initial)
        self.domain = domain
        self.config = config
        self.fitness = fitness
        self.stages: Tuple[MetricsFn, ...] = (metrics,) if callable(metrics) else tuple(metrics)
        if not self.stages:
            raise ValueError("metrics: give at least one metrics function")
        self.constraints = tuple(constraints)
        self.state_path = None if state_path is None else Path(state_path)
        self.write_state = write_state
        self.progress = progress
        self.settings = dict(settings or {})
        self.sense = FITNESS_SENSE[config.fitness]
        self.candidates: List[Candidate] = []
        self._index: Dict[Config, int] = {}
        self._stats = GenerationStats(0)
        self._acceptance: Dict[str, List[int]] = {}

    # -- bookkeeping --------------------------------------------------------------------------
    def _fingerprint(self) -> Dict[str, Any]:
        data = search_fingerprint(self.config, self.constraints, self.settings, self.domain.to_dict())
        data["initial"] = [config_key(sub) for sub in self.initial]
        return data

    def _opening(self, rng: random.Random) -> List[Config]:
        """Generation 0: the initial subnets, then random feasible draws up to the population size.

        Raises:
            ValueError: an initial subnet violates a constraint (naming the subnet and the constraints).
        """
        for sub in self.initial:
            record = self._candidate(sub, 0, drawn=False)
            if not record.feasible:
                broken = [f"{c} ({c.metric} {record.metrics[c.metric]:.6g})" for c in self.constraints
                          if c.metric in record.metrics and not c.holds(record.metrics)]
                raise ValueError(f"initial subnet {record.key} violates {', '.join(broken)}")
        drawn = [self._propose("sample", lambda: self.domain.sample(rng), rng, 0)
                 for _ in range(self.config.population - len(self.initial))]
        return list(self.initial) + drawn

    def _metrics(self, sub: Config) -> Tuple[Dict[str, float], bool]:
        """The metrics of ``sub``, stage by stage, stopping after the first stage that violates a constraint."""
        metrics: Dict[str, float] = {}
        pending = list(self.constraints)
        for stage in self.stages:
            metrics.update({k: float(v) for k, v in stage(sub).items()})
            ready = [c for c in pending if c.metric in metrics]
            if not all(c.holds(metrics) for c in ready):
                return metrics, False
            pending = [c for c in pending if c.metric not in metrics]
        if pending:
            raise KeyError(f"constraint(s) {[str(c) for c in pending]} need metrics not computed; "
                           f"metrics are {sorted(metrics)}")
        missing = [m for m in self.config.pareto_metrics if m not in metrics]
        if missing:
            raise KeyError(f"Pareto metric(s) {missing} not computed; metrics are {sorted(metrics)}")
        return metrics, True

    def _candidate(self, sub: Config, generation: int, drawn: bool = True) -> Candidate:
        """The record of ``sub``, computing its metrics the first time it is proposed; counts one draw unless
        ``drawn`` is false (a warm-start subnet: chosen, not drawn, so it stays out of the acceptance rate and the
        rejection budget)."""
        if sub not in self._index:
            metrics, feasible = self._metrics(sub)
            self._index[sub] = len(self.candidates)
            self.candidates.append(Candidate(sub, metrics, generation, feasible))
        record = self.candidates[self._index[sub]]
        if drawn:
            self._stats.draws += 1
            self._stats.feasible += record.feasible
        return record

    def _violation(self, c: Candidate) -> Tuple[int, float]:
        """(constraints not evaluated, summed relative violation of the evaluated ones): smaller is closer."""
        evaluated = [k for k in self.constraints if k.metric in c.metrics]
        return len(self.constraints) - len(evaluated), sum(k.violation(c.metrics) for k in evaluated)

    def _rank(self, c: Candidate) -> Tuple[float, str]:
        """Single-objective total order: the fitness to minimise (non-finite: worst), then the subnet's JSON."""
        assert c.fitness is not None
        value = self.sense * c.fitness
        return (value if math.isfinite(value) else math.inf), c.key

    def _objectives(self, c: Candidate) -> List[float]:
        assert c.fitness is not None
        return [self.sense * c.fitness] + [c.metrics[m] for m in self.config.pareto_metrics]

    # -- the three steps ------------------------------------------------------------------------
    def _propose(self, kind: str, draw: Callable[[], Config], rng: random.Random, generation: int) -> Config:
        """A feasible proposal: rejection sampling within the adaptive budget, then a repair walk from the least
        violating draw; if the walk fails, once more with the full budget (``max_draws``) of draws.

        Raises:
            RuntimeError: both attempts failed (naming the constraints and the closest metric values).
        """
        counts = self._acceptance.setdefault(kind, [0, 0])
        budget = _rejection_budget(counts[0], counts[1], self.config.max_draws)
        walked, repaired = self._acceptance.get("repair", (0, 0))
        if repaired:  # no longer than a repair walk has taken on average
            budget = min(budget, math.ceil(walked / repaired))
        drawn = 0
        for draws in (budget, self.config.max_draws):
            closest: Optional[Candidate] = None
            for _ in range(draws):
                record = self._candidate(draw(), generation)
                counts[0] += 1
                if record.feasible:
                    counts[1] += 1
                    return record.subnet
                if closest is None or self._violation(record) < self._violation(closest):
                    closest = record
            drawn += draws
            assert closest is not None
            closest = self._repair(closest, rng, generation)
            if closest.feasible:
                return closest.subnet
        values = ", ".join(f"{k.metric}={closest.metrics[k.metric]:.6g}" for k in self.constraints
                           if k.metric in closest.metrics)
        raise RuntimeError(
            f"no subnet of space {self.domain.name!r} met the constraints ({', '.join(map(str, self.constraints))}): "
            f"{drawn} draws and two repair walks of {self.config.max_draws} mutations failed (closest: {values}); "
            f"loosen the constraints or raise max_draws"
        )

    def _repair(self, start: Candidate, rng: random.Random, generation: int) -> Candidate:
        """Walk from ``start`` by mutations that do not increase its violation, until one is feasible (returned) or
        ``max_draws`` steps are spent (the walk's end is returned).

        The mutation probability adapts by the 1/5 success rule of evolution strategies (Rechenberg): x1.5
        after a step that lowers the violation, x1.5**-0.25 after one that does not, within
        [:data:`MIN_REPAIR_PROB`, ``mutation_prob``]: near the boundary, steps shrink to a gene or two.
        """
        current, violation = start, self._violation(start)
        prob = self.config.mutation_prob
        counts = self._acceptance.setdefault("repair", [0, 0])
        for _ in range(self.config.max_draws):
            record = self._candidate(self.domain.mutate(current.subnet, rng, prob), generation)
            counts[0] += 1
            if record.feasible:
                counts[1] += 1
                self._stats.repaired += 1
                return record
            step = self._violation(record)
            improved = step < violation
            prob = min(self.config.mutation_prob, max(MIN_REPAIR_PROB, prob * (1.5 if improved else 1.5 ** -0.25)))
            if step <= violation:
                current, violation = record, step
        return current

    def _breed(self, parents: List[Config], rng: random.Random, generation: int) -> List[Config]:
        cfg = self.config
        mutants = [
            self._propose("mutate", lambda: self.domain.mutate(rng.choice(parents), rng, cfg.mutation_prob), rng,
                          generation)
            for _ in range(cfg.mutations)
        ]
        children = [
            self._propose("crossover", lambda: self.domain.crossover(rng.choice(parents), rng.choice(parents), rng),
                          rng, generation)
            for _ in range(cfg.crossovers)
        ]
        return parents + mutants + children

    def _evaluate(self, population: Sequence[Config]) -> None:
        """Evaluate the subnets of ``population`` not evaluated yet (one batch)."""
        todo = list(dict.fromkeys(s for s in population if self.candidates[self._index[s]].fitness is None))
        if not todo:
            return
        values = [float(v) for v in self.fitness(todo)]
        if len(values) != len(todo):
            raise ValueError(f"fitness returned {len(values)} values for {len(todo)} subnets")
        for sub, value in zip(todo, values):
            self.candidates[self._index[sub]].fitness = value
        self._stats.evaluations += len(todo)
        self._stats.non_finite += sum(not math.isfinite(v) for v in values)

    def _select(self, population: Sequence[Config]) -> List[Config]:
        """The parents: best distinct subnets, or NSGA-II in Pareto mode; non-finite fitness last."""
        records = [self.candidates[self._index[s]] for s in dict.fromkeys(population)]
        if not self.config.pareto_metrics:
            return [c.subnet for c in sorted(records, key=self._rank)[: self.config.parents]]
        finite = sorted((c for c in records if math.isfinite(c.fitness)), key=lambda c: (self._objectives(c), c.key))
        rest = sorted((c for c in records if not math.isfinite(c.fitness)), key=lambda c: c.key)
        chosen = [finite[i] for i in nsga2_select([self._objectives(c) for c in finite], self.config.parents)]
        return [c.subnet for c in (chosen + rest)[: self.config.parents]]

    def _best(self) -> List[Candidate]:
        """The best subnet, or the Pareto front, among the evaluated subnets with a finite fitness.

        Raises:
            RuntimeError: no evaluated subnet has a finite fitness.
        """
        evaluated = [c for c in self.candidates if c.fitness is not None and math.isfinite(c.fitness)]
        if not evaluated:
            raise RuntimeError(
                f"every evaluated subnet has a NaN or infinite fitness ({self.config.fitness}): "
                f"check the supernet checkpoint and the validation data"
            )
        if not self.config.pareto_metrics:
            return [min(evaluated, key=self._rank)]
        front = [evaluated[i] for i in pareto_front([self._objectives(c) for c in evaluated])]
        return sorted(front, key=lambda c: (self._objectives(c)[1:], self._objectives(c)[0], c.key))

    # -- the loop -------------------------------------------------------------------------------
    def _resume(self) -> Optional[SearchState]:
        if self.state_path is None or not self.state_path.is_file():
            return None
        state = SearchState.load(self.state_path, self.domain.config_from_dict)
        saved = {"initial": [], **state.fingerprint}  # states written before warm starts existed had none
        refuse_other_settings(self.state_path, saved, self._fingerprint(),
                              "use the same settings, another state path, or delete it to start over")
        self.candidates = state.candidates
        self._index = {c.subnet: i for i, c in enumerate(self.candidates)}
        self._acceptance = state.acceptance
        logger.info("resuming %s after generation %d", self.state_path, state.generation)
        return state

    def _log_generation(self, generation: int, best: List[Candidate]) -> None:
        s = self._stats
        best_text = f"best {self.config.fitness} {best[0].fitness:.4f}" if len(best) == 1 else f"front of {len(best)}"
        logger.info(
            "generation %d/%d: %d evaluations (%d non-finite), %s; %d draws, %d met the constraints "
            "(acceptance %.1f %%), %d repaired",
            generation + 1, self.config.generations, s.evaluations, s.non_finite, best_text, s.draws, s.feasible,
            100 * s.acceptance, s.repaired,
        )

    def run(self) -> SearchResult:
        """Run (or finish) ``config.generations`` generations."""
        cfg = self.config
        rng = random.Random(cfg.seed)
        state = self._resume()
        if state is None:
            state = SearchState(self._fingerprint(), 0, rng.getstate(), [])
        rng.setstate(state.rng_state)
        restored = sum(c.fitness is not None for c in self.candidates)
        bar = progress(total=cfg.generations, initial=min(state.generation, cfg.generations), desc="search",
                       unit="gen", enabled=self.progress)
        for generation in range(state.generation, cfg.generations):
            self._stats = GenerationStats(generation)
            if generation == 0:
                population = self._opening(rng)
            else:
                population = self._breed(state.parents, rng, generation)
            self._evaluate(population)
            state.parents = self._select(population)
            state.populations.append([self._index[s] for s in population])
            state.stats.append(self._stats)
            state.generation, state.rng_state, state.candidates = generation + 1, rng.getstate(), self.candidates
            state.acceptance = self._acceptance
            if self.write_state and self.state_path is not None:
                state.save(self.state_path)
            best = self._best()
            self._log_generation(generation, best)
            bar.set_postfix(best=f"{best[0].fitness:.4f}" if len(best) == 1 else f"front of {len(best)}")
            bar.update(1)
        bar.close()
        evaluations = sum(c.fitness is not None for c in self.candidates)
        return SearchResult(self._best(), self.candidates, state.populations, evaluations, evaluations - restored,
                            state.stats)
