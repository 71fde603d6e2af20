"""A diverged subnet (NaN or infinite validation loss) is never a parent's rival, the best subnet or on the front."""
import math
import random
from typing import List, Sequence

import pytest

from fairseq_shiftadd.search import EvolutionarySearch, EvolutionConfig, TranslationDomain
from fairseq_shiftadd.space import SubnetConfig, get_space

TINY = get_space("tiny")


def _energy(sub: SubnetConfig) -> dict:
    return {"energy_mj": sum(layer.ffn_dim for layer in sub.encoder + sub.decoder) / 1000.0}


class DivergingFitness:
    """Every third subnet diverges (NaN, or +-inf); the others get a finite loss."""

    def __init__(self, bad: float) -> None:
        self.bad = bad

    def __call__(self, subs: Sequence[SubnetConfig]) -> List[float]:
        rng = [random.Random(s.to_json()) for s in subs]
        return [self.bad if r.random() < 0.34 else 1.0 + r.random() for r in rng]


@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), float("inf")])
@pytest.mark.parametrize("pareto", [(), ("energy_mj",)])
def test_non_finite_fitness_is_never_selected(bad: float, pareto: tuple) -> None:
    config = EvolutionConfig(population=12, parents=4, mutations=4, crossovers=4, generations=3,
                             pareto_metrics=pareto)
    result = EvolutionarySearch(TranslationDomain(TINY), config, DivergingFitness(bad), _energy, [],
                                progress=False).run()
    assert any(c.fitness is not None and not math.isfinite(c.fitness) for c in result.candidates)
    assert result.best and all(math.isfinite(b.fitness) for b in result.best)
    finite = [c.fitness for c in result.candidates if c.fitness is not None and math.isfinite(c.fitness)]
    if not pareto:
        assert result.best[0].fitness == min(finite)
