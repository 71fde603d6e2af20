"""What the search knows after each finished generation, as JSON: enough to resume to the identical result.

``state.json`` holds the RNG state, the parents, the population of every finished generation and every
candidate seen so far (metrics, fitness if evaluated), the draw statistics of every generation, plus a
fingerprint of the settings that shaped the run. A restarted search loads it, checks the fingerprint
(:func:`fingerprint_diff` names every difference) and continues without re-evaluating anything.

A non-finite fitness (NaN, inf) is stored as such (JSON ``NaN`` / ``Infinity``, which Python reads back).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Tuple, Union

from ..atomic import write_text

__all__ = [
    "Candidate",
    "GenerationStats",
    "SearchState",
    "ConfigParser",
    "config_key",
    "fingerprint_diff",
    "read_fingerprint",
    "refuse_other_settings",
]

ConfigParser = Callable[[Mapping[str, Any]], Hashable]
"""Reads a configuration back from its ``to_dict()`` form (a :class:`~.domain.SearchDomain`'s ``config_from_dict``)."""

STATE_VERSION = 2


def config_key(config: Any) -> str:
    """A configuration's canonical JSON (``to_dict()`` with sorted keys, no spaces)."""
    return json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))


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

    @functools.cached_property
    def key(self) -> str:
        """The subnet's canonical JSON (:func:`config_key`): the last, tie-breaking key of every ranking."""
        return config_key(self.subnet)

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
class GenerationStats:
    """How one generation was proposed and evaluated.

    Args:
        generation: its index (0 = the initial population).
        draws: subnets drawn (sampled, mutated, crossed or repair steps), repeats included.
        feasible: of those, the draws that met every constraint.
        repaired: population members found by a repair walk (see :mod:`.evolution`).
        evaluations: distinct subnets whose fitness this generation evaluated.
        non_finite: of those, the ones whose fitness was NaN or infinite (ranked worst).
    """

    generation: int
    draws: int = 0
    feasible: int = 0
    repaired: int = 0
    evaluations: int = 0
    non_finite: int = 0

    @property
    def acceptance(self) -> float:
        """``feasible / draws`` (1.0 without draws: the population was all parents)."""
        return self.feasible / self.draws if self.draws else 1.0

    def to_dict(self) -> Dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


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
        stats: per finished generation, its :class:`GenerationStats`.
        acceptance: per kind of proposal (``sample``, ``mutate``, ``crossover``), ``[draws, feasible]`` of its
            rejection sampling so far (the adaptive rejection budget reads it).
    """

    fingerprint: Dict[str, Any]
    generation: int
    rng_state: Tuple[Any, ...]
    parents: List[Hashable]
    populations: List[List[int]] = field(default_factory=list)
    candidates: List[Candidate] = field(default_factory=list)
    stats: List[GenerationStats] = field(default_factory=list)
    acceptance: Dict[str, List[int]] = field(default_factory=dict)

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
            "stats": [s.to_dict() for s in self.stats],
            "acceptance": self.acceptance,
        }
        write_text(path, json.dumps(data) + "\n")

    @classmethod
    def load(cls, path: Union[str, Path], parse: ConfigParser) -> "SearchState":
        """Read a file written by :meth:`save`; ``parse`` reads each configuration.

        Raises:
            ValueError: the file is not a search state of this version.
        """
        data = _read(path)
        version, internal, gauss = data["rng_state"]
        return cls(
            fingerprint=data["fingerprint"],
            generation=int(data["generation"]),
            rng_state=(version, tuple(internal), gauss),
            parents=[parse(p) for p in data["parents"]],
            populations=[list(p) for p in data["populations"]],
            candidates=[Candidate.from_dict(c, parse) for c in data["candidates"]],
            stats=[GenerationStats(**s) for s in data["stats"]],
            acceptance={kind: list(counts) for kind, counts in data["acceptance"].items()},
        )


def _read(path: Union[str, Path]) -> Dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a search state ({err})") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError(
            f"{path}: not a search state of version {STATE_VERSION} (written by another version of "
            f"fairseq-shiftadd-search?): use another output directory or start over"
        )
    return data


def read_fingerprint(path: Union[str, Path]) -> Dict[str, Any]:
    """The fingerprint saved in a state file (``ValueError`` as :meth:`SearchState.load`)."""
    return _read(path)["fingerprint"]


def _flatten(value: Any, prefix: str, out: Dict[str, Any]) -> Dict[str, Any]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value
    return out


_UNSET = object()


def _show(value: Any) -> str:
    return "(unset)" if value is _UNSET else json.dumps(value)


def fingerprint_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """Every setting that differs between two fingerprints, as ``"name: old -> new"`` (nested keys dotted,
    ``(unset)`` for a key one side lacks), in the new fingerprint's order."""
    flat_old, flat_new = _flatten(old, "", {}), _flatten(new, "", {})
    names = dict.fromkeys([*flat_new, *flat_old])
    return [
        f"{name}: {_show(flat_old.get(name, _UNSET))} -> {_show(flat_new.get(name, _UNSET))}"
        for name in names
        if flat_old.get(name, _UNSET) != flat_new.get(name, _UNSET)
    ]


def refuse_other_settings(path: Union[str, Path], saved: Mapping[str, Any], current: Mapping[str, Any],
                          advice: str) -> None:
    """Compare ``current`` (all or some of a fingerprint's top-level keys) with the ``saved`` fingerprint.

    Raises:
        ValueError: one line naming every difference (:func:`fingerprint_diff`), then ``advice``.
    """
    diff = fingerprint_diff({k: saved[k] for k in current if k in saved}, current)
    if diff:
        raise ValueError(f"{path} was written by a search with other settings ({'; '.join(diff)}): {advice}")
