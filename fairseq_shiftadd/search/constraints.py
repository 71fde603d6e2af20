"""Hardware constraints of the search: ``--constraint "energy_mj<=2.5"`` (several allowed, all must hold).

A :class:`Constraint` compares one cost metric (a key of the dict a metrics function returns, e.g.
``energy_mj``, ``analytical_latency_ms``, ``params``) with a bound using ``<=``, ``<``, ``>=`` or ``>``.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Sequence

__all__ = ["Constraint", "parse_constraint", "satisfies"]

OPERATORS: Dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metrics[metric] <op> bound``."""

    metric: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"constraint operator {self.op!r} not in allowed values {tuple(OPERATORS)}")

    def holds(self, metrics: Mapping[str, float]) -> bool:
        """Whether ``metrics`` (which must contain :attr:`metric`) satisfy the constraint."""
        if self.metric not in metrics:
            raise KeyError(f"constraint {self} needs metric {self.metric!r}; got {sorted(metrics)}")
        return OPERATORS[self.op](float(metrics[self.metric]), self.bound)

    def violation(self, metrics: Mapping[str, float]) -> float:
        """How far ``metrics`` miss the bound, relative to it: 0 if the constraint holds, else
        ``max(|value - bound| / max(|bound|, 1e-12), 1e-12)`` (positive even at equality for ``<`` and ``>``).
        A non-finite value violates by ``inf``. Used to walk an infeasible subnet toward feasibility.
        """
        if self.holds(metrics):
            return 0.0
        value = float(metrics[self.metric])
        if not math.isfinite(value):
            return math.inf
        return max(abs(value - self.bound) / max(abs(self.bound), 1e-12), 1e-12)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


def parse_constraint(text: str, metrics: Sequence[str]) -> Constraint:
    """Parse ``"METRIC OP NUMBER"`` (spaces optional), e.g. ``"energy_mj<=2.5"``.

    Args:
        text: the constraint.
        metrics: the metric names that may be constrained.

    Raises:
        ValueError: malformed text, an unknown metric (listing ``metrics``) or a bound that is not a number.
    """
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"constraint {text!r} must look like 'METRIC<=NUMBER' (operators: {', '.join(OPERATORS)})"
        )
    metric, op, bound = match.groups()
    if metric not in metrics:
        raise ValueError(f"constraint {text!r}: metric {metric!r} not in allowed values {tuple(metrics)}")
    try:
        value = float(bound)
    except ValueError:
        raise ValueError(f"constraint {text!r}: bound {bound!r} is not a number") from None
    return Constraint(metric, op, value)


def satisfies(constraints: Sequence[Constraint], metrics: Mapping[str, float]) -> bool:
    """Whether every constraint holds for ``metrics`` (true without constraints)."""
    return all(c.holds(metrics) for c in constraints)
