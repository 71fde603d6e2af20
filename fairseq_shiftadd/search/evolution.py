"""Evolutionary search over a :class:`~.domain.SearchDomain` (ShiftAddNAS, arXiv 2205.08119; HAT).

One generation, as in the paper (population 125 = 25 parents + 50 mutations + 50 crossovers):

1. evaluate the population's fitness (validation loss, or BLEU, of each subnet with inherited weights); a
   cache evaluates each distinct subnet once, and the fitness callable gets a *batch* (it may split it across
   ranks);
2. select the parents: the ``parents`` best distinct subnets (elitist), or in Pareto mode (``pareto_metrics``)
   by NSGA-II rank and crowding distance on (fitness, metrics...);
3. breed the next population: the parents, ``mutations`` mutants of random parents (each gene redrawn with
   probability ``mutation_prob``) and ``crossovers`` uniform crossovers of two random parents; every child is
   rejection-sampled until it meets the constraints (the initial random population too).

All randomness comes from one ``random.Random(seed)``. After each finished generation the state is written
(:class:`~.state.SearchState`); a restarted search continues from it and reaches the same result as an
uninterrupted one. This module needs no fairseq.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..progress import progress

from .constraints import Constraint, satisfies
from .domain import Config, SearchDomain
from .pareto import nsga2_select, pareto_front
from .state import Candidate, SearchState

logger = logging.getLogger(__name__)

__all__ = ["FITNESS_SENSE", "EvolutionConfig", "SearchResult", "EvolutionarySearch", "BatchFitness", "MetricsFn"]

BatchFitness = Callable[[Sequence[Config]], Sequence[float]]
"""Fitness of a batch of subnets, in order."""
MetricsFn = Callable[[Config], Mapping[str, float]]
"""Cost metrics of one subnet (``energy_mj``, ``params``, ...)."""

FITNESS_SENSE: Dict[str, float] = {"loss": 1.0, "bleu": -1.0}
"""Sign that turns each fitness into a quantity to minimise (loss is minimised, BLEU maximised)."""


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
        max_rejections: children drawn in a row that may violate the constraints before the search gives up.
        fitness: ``"loss"`` (minimised) or ``"bleu"`` (maximised).
        pareto_metrics: cost metrics minimised jointly with the fitness; non-empty selects the multi-objective
            (NSGA-II) mode, whose result is the Pareto front.
    """

    population: int = 125
    parents: int = 25
    mutations: int = 50
    crossovers: int = 50
    mutation_prob: float = 0.3
    generations: int = 20
    seed: int = 1
    max_rejections: int = 10_000
    fitness: str = "loss"
    pareto_metrics: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("population", "parents", "generations", "max_rejections"):
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
        best: single objective: ``[the best subnet]``; Pareto mode: the front over every evaluated subnet,
            sorted by the first Pareto metric.
        candidates: every proposed subnet in order of first proposal (rejected ones have ``fitness=None``).
        populations: per generation, the population as indices into ``candidates``.
        evaluations: distinct subnets whose fitness was evaluated, over the whole (possibly resumed) search.
        new_evaluations: of those, the ones evaluated by this run.
    """

    best: List[Candidate]
    candidates: List[Candidate]
    populations: List[List[int]]
    evaluations: int
    new_evaluations: int


class EvolutionarySearch:
    """The evolutionary search; :meth:`run` returns a :class:`SearchResult`.

    Args:
        domain: the search space (translation or vision subnets).
        config: the hyperparameters.
        fitness: evaluates a batch of subnets (every rank must call it with the same batch if it is distributed).
        metrics: cost metrics of a subnet; must contain every constrained and every Pareto metric.
        constraints: all must hold for a subnet to enter a population.
        state_path: where the state is saved after each generation and resumed from (``None``: no state).
        write_state: whether this process writes the state (rank 0 only); every process reads it.
        progress: show a progress bar with the current best.
    """

    def __init__(
        self,
        domain: SearchDomain,
        config: EvolutionConfig,
        fitness: BatchFitness,
        metrics: MetricsFn,
        constraints: Sequence[Constraint] = (),
        state_path: Optional[Path] = None,
        write_state: bool = True,
        progress: bool = True,
    ) -> None:
        self.domain = domain
        self.config = config
        self.fitness = fitness
        self.metrics = metrics
        self.constraints = tuple(constraints)
        self.state_path = None if state_path is None else Path(state_path)
        self.write_state = write_state
        self.progress = progress
        self.sense = FITNESS_SENSE[config.fitness]
        self.candidates: List[Candidate] = []
        self._index: Dict[Config, int] = {}

    # -- bookkeeping --------------------------------------------------------------------------
    def _fingerprint(self) -> Dict[str, object]:
        return {
            "config": self.config.fingerprint(),
            "space": self.domain.to_dict(),
            "constraints": [str(c) for c in self.constraints],
        }

    def _candidate(self, sub: Config, generation: int) -> Candidate:
        """The record of ``sub``, computing its metrics the first time it is proposed."""
        if sub not in self._index:
            metrics = {k: float(v) for k, v in self.metrics(sub).items()}
            missing = [m for m in self.config.pareto_metrics if m not in metrics]
            if missing:
                raise KeyError(f"Pareto metric(s) {missing} not computed; metrics are {sorted(metrics)}")
            self._index[sub] = len(self.candidates)
            self.candidates.append(Candidate(sub, metrics, generation, satisfies(self.constraints, metrics)))
        return self.candidates[self._index[sub]]

    def _minimised(self, c: Candidate) -> float:
        """The fitness as a value to minimise; NaN or infinite (a diverged subnet) is the worst, never the best."""
        assert c.fitness is not None
        return self.sense * c.fitness if math.isfinite(c.fitness) else math.inf

    def _objectives(self, c: Candidate) -> List[float]:
        return [self._minimised(c)] + [c.metrics[m] for m in self.config.pareto_metrics]

    # -- the three steps ------------------------------------------------------------------------
    def _propose(self, draw: Callable[[], Config], generation: int) -> Config:
        """The first of up to ``max_rejections`` draws that meets the constraints."""
        for _ in range(self.config.max_rejections):
            sub = draw()
            if self._candidate(sub, generation).feasible:
                return sub
        raise RuntimeError(
            f"no subnet of space {self.domain.name!r} met the constraints "
            f"({', '.join(map(str, self.constraints))}) in {self.config.max_rejections} draws: "
            f"loosen the constraints or raise max_rejections"
        )

    def _breed(self, parents: List[Config], rng: random.Random, generation: int) -> List[Config]:
        cfg = self.config
        mutants = [
            self._propose(lambda: self.domain.mutate(rng.choice(parents), rng, cfg.mutation_prob), generation)
            for _ in range(cfg.mutations)
        ]
        children = [
            self._propose(lambda: self.domain.crossover(rng.choice(parents), rng.choice(parents), rng), generation)
            for _ in range(cfg.crossovers)
        ]
        return parents + mutants + children

    def _evaluate(self, population: Sequence[Config]) -> int:
        """Evaluate the subnets of ``population`` not evaluated yet (one batch); returns how many."""
        todo = list(dict.fromkeys(s for s in population if self.candidates[self._index[s]].fitness is None))
        if todo:
            values = list(self.fitness(todo))
            if len(values) != len(todo):
                raise ValueError(f"fitness returned {len(values)} values for {len(todo)} subnets")
            for sub, value in zip(todo, values):
                self.candidates[self._index[sub]].fitness = float(value)
        return len(todo)

    def _select(self, population: Sequence[Config]) -> List[Config]:
        """The parents: best distinct subnets (ties keep population order), or NSGA-II in Pareto mode."""
        distinct = list(dict.fromkeys(population))
        records = [self.candidates[self._index[s]] for s in distinct]
        if self.config.pareto_metrics:
            chosen = nsga2_select([self._objectives(c) for c in records], self.config.parents)
        else:
            chosen = sorted(range(len(distinct)), key=lambda i: self._minimised(records[i]))
        return [distinct[i] for i in chosen[: self.config.parents]]

    def _best(self) -> List[Candidate]:
        evaluated = [c for c in self.candidates if c.fitness is not None]
        finite = [c for c in evaluated if math.isfinite(c.fitness)]
        evaluated = finite or evaluated  # a NaN or infinite fitness is no result, not even on a front
        if self.config.pareto_metrics:
            front = [evaluated[i] for i in pareto_front([self._objectives(c) for c in evaluated])]
            return sorted(front, key=lambda c: self._objectives(c)[1:])
        return [min(evaluated, key=self._minimised)]

    # -- the loop -------------------------------------------------------------------------------
    def _resume(self) -> Optional[SearchState]:
        if self.state_path is None or not self.state_path.is_file():
            return None
        state = SearchState.load(self.state_path, self.domain.config_from_dict)
        if state.fingerprint != self._fingerprint():
            raise ValueError(
                f"{self.state_path} was written by a search with other settings "
                f"({state.fingerprint['config']}, constraints {state.fingerprint['constraints']}); "
                f"this one has ({self.config.fingerprint()}, constraints {[str(c) for c in self.constraints]}): "
                f"use another output directory or the same settings"
            )
        self.candidates = state.candidates
        self._index = {c.subnet: i for i, c in enumerate(self.candidates)}
        logger.info("resuming %s after generation %d", self.state_path, state.generation)
        return state

    def run(self) -> SearchResult:
        """Run (or finish) ``config.generations`` generations."""
        cfg = self.config
        rng = random.Random(cfg.seed)
        state = self._resume()
        if state is None:
            state = SearchState(self._fingerprint(), 0, rng.getstate(), [])
        rng.setstate(state.rng_state)
        restored = sum(c.fitness is not None for c in self.candidates)
        new_evaluations = 0
        bar = progress(total=cfg.generations, initial=min(state.generation, cfg.generations), desc="search",
                       unit="gen", enabled=self.progress)
        for generation in range(state.generation, cfg.generations):
            if generation == 0:
                population = [self._propose(lambda: self.domain.sample(rng), 0) for _ in range(cfg.population)]
            else:
                population = self._breed(state.parents, rng, generation)
            new_evaluations += self._evaluate(population)
            state.parents = self._select(population)
            state.populations.append([self._index[s] for s in population])
            state.generation, state.rng_state, state.candidates = generation + 1, rng.getstate(), self.candidates
            if self.write_state and self.state_path is not None:
                state.save(self.state_path)
            best = self._best()
            bar.set_postfix(best=f"{best[0].fitness:.4f}" if len(best) == 1 else f"front of {len(best)}",
                            evals=restored + new_evaluations)
            bar.update(1)
        bar.close()
        return SearchResult(self._best(), self.candidates, state.populations, restored + new_evaluations,
                            new_evaluations)
