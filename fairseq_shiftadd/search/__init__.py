"""Evolutionary search of ShiftAddNAS subnets (arXiv 2205.08119, docs/method.md section 4).

:mod:`.domain` (what the engine needs of a space), :mod:`.evolution` (the engine, no fairseq), :mod:`.constraints`,
:mod:`.pareto` (NSGA-II tools), :mod:`.state` (resumable JSON state), :mod:`.metrics` (the metrics it constrains, in
stages, cheapest first), :mod:`.fitness` (validation loss / BLEU with inherited weights, fairseq), :mod:`.distributed`
(candidates across ranks, ranks that die with their launcher), :mod:`.fingerprint` (the CLI settings a resumed search
must share), :mod:`.report` (YAML, CSV, plot), :mod:`.cli` (``fairseq-shiftadd-search``).
"""
from .constraints import Constraint, parse_constraint, satisfies
from .domain import SearchDomain, TranslationDomain
from .evolution import FITNESS_SENSE, EvolutionarySearch, EvolutionConfig, SearchResult
from .state import Candidate, SearchState

__all__ = [
    "Constraint",
    "parse_constraint",
    "satisfies",
    "SearchDomain",
    "TranslationDomain",
    "EvolutionConfig",
    "EvolutionarySearch",
    "SearchResult",
    "FITNESS_SENSE",
    "Candidate",
    "SearchState",
]
