"""What the search knows after each finished generation, as JSON: enough to resume to the identical result.

``state.json`` holds the RNG state, the parents, the population of every finished generation and every
candidate seen so far (metrics, fitness if evaluated), plus a fingerprint of the settings that shaped the run.
A restarted search loads it, checks the fingerprint and continues without re-evaluating anything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Tuple, Union

from .files import atomic_write_text

__all__ = ["Candidate", "SearchState", "ConfigParser"]

ConfigParser = Callable[[Mapping[str, Any]], Hashable]
"""Reads a configuration back from its ``to_dict()`` form (a :class:`~.domain.SearchDomain`'s ``config_from_dict``)."""

STATE_VERSION = 1


@dataclass
class Candidate:
    """A subnet the search proposed.

    Args:
        subnet: the subnet (a frozen configuration with ``to_dict()``).
        metrics: its cost metrics (``energy_mj``, ``params``, ...).
        generation: the generation that first proposed it (0 = the random initial population).
        feasible: whether it satisfies every constraint (infeasible ones are rejected, never evaluated).
        fitness: validation loss or BLEU with inherited weights; ``None`` until evaluated.
    """

    subnet: Hashable
    metrics: Dict[str, float]
    generation: int
    feasible: bool
    fitness: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "subnet": self.subnet.to_dict(),
            "metrics": self.metrics,
            "generation": self.generation,
            "feasible": self.feasible,
            "fitness": self.fitness,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any], parse: ConfigParser) -> "Candidate":
        return cls(
            parse(data["subnet"]),
            {k: float(v) for k, v in data["metrics"].items()},
            int(data["generation"]),
            bool(data["feasible"]),
            None if data["fitness"] is None else float(data["fitness"]),
        )


@dataclass
class SearchState:
    """The search after ``generation`` finished generations.

    Args:
        fingerprint: the settings a resumed run must share (all but the number of generations).
        generation: finished generations.
        rng_state: ``random.Random.getstate()`` after the last finished generation.
        parents: the parents selected in the last finished generation.
        populations: per finished generation, the population as indices into ``candidates``.
        candidates: every subnet proposed so far, in order of first proposal.
    """

    fingerprint: Dict[str, Any]
    generation: int
    rng_state: Tuple[Any, ...]
    parents: List[Hashable]
    populations: List[List[int]] = field(default_factory=list)
    candidates: List[Candidate] = field(default_factory=list)

    def save(self, path: Union[str, Path]) -> None:
        """Write atomically as JSON (floats round-trip exactly)."""
        version, internal, gauss = self.rng_state
        data = {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "generation": self.generation,
            "rng_state": [version, list(internal), gauss],
            "parents": [p.to_dict() for p in self.parents],
            "populations": self.populations,
            "candidates": [c.to_dict() for c in self.candidates],
        }
        atomic_write_text(path, json.dumps(data) + "\n")

    @classmethod
    def load(cls, path: Union[str, Path], parse: ConfigParser) -> "SearchState":
        """Read a file written by :meth:`save`; ``parse`` reads each configuration.

        Raises:
            ValueError: the file is not a search state of this version.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a search state ({err})") from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: not a search state of version {STATE_VERSION}")
        version, internal, gauss = data["rng_state"]
        return cls(
            fingerprint=data["fingerprint"],
            generation=int(data["generation"]),
            rng_state=(version, tuple(internal), gauss),
            parents=[parse(p) for p in data["parents"]],
            populations=[list(p) for p in data["populations"]],
            candidates=[Candidate.from_dict(c, parse) for c in data["candidates"]],
        )
