"""Pareto tools for the multi-objective search (NSGA-II, Deb et al. 2002), every objective minimised.

``points[i]`` is the objective vector of candidate ``i``; functions return candidate indices.
"""
from __future__ import annotations

import math
from typing import List, Sequence

__all__ = ["dominates", "non_dominated_sort", "crowding_distance", "nsga2_select", "pareto_front"]

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in at least one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_sort(points: Sequence[Point]) -> List[List[int]]:
    """Fronts ``F_1, F_2, ...``: ``F_1`` is non-dominated, ``F_k`` is non-dominated once ``F_1..F_{k-1}`` are removed.

    Indices keep their input order inside a front. O(M N^2) for N points and M objectives.
    """
    n = len(points)
    dominated_by: List[List[int]] = [[] for _ in range(n)]  # i dominates every j in dominated_by[i]
    counts = [0] * n  # how many points dominate i
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by[i].append(j)
                counts[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by[j].append(i)
                counts[i] += 1
    fronts: List[List[int]] = []
    current = [i for i in range(n) if counts[i] == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def crowding_distance(points: Sequence[Point], front: Sequence[int]) -> List[float]:
    """NSGA-II crowding distance of each member of ``front`` (same order).

    Per objective the members are sorted; the two extremes get ``inf``, the others the gap between their
    neighbours over the objective's range; the distances are summed over objectives.
    """
    distance = [0.0] * len(front)
    if len(front) <= 2:
        return [math.inf] * len(front)
    for m in range(len(points[front[0]])):
        order = sorted(range(len(front)), key=lambda k: points[front[k]][m])
        low, high = points[front[order[0]]][m], points[front[order[-1]]][m]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for before, k, after in zip(order, order[1:], order[2:]):
            distance[k] += (points[front[after]][m] - points[front[before]][m]) / (high - low)
    return distance


def nsga2_select(points: Sequence[Point], k: int) -> List[int]:
    """The ``k`` best indices by (front rank, then larger crowding distance); ties keep input order."""
    chosen: List[int] = []
    for front in non_dominated_sort(points):
        if len(chosen) + len(front) <= k:
            chosen.extend(front)
            continue
        distance = crowding_distance(points, front)
        order = sorted(range(len(front)), key=lambda i: -distance[i])  # stable: ties keep input order
        chosen.extend(front[i] for i in order[: k - len(chosen)])
        break
    return chosen


def pareto_front(points: Sequence[Point]) -> List[int]:
    """Indices of the non-dominated points (the first front)."""
    fronts = non_dominated_sort(points)
    return fronts[0] if fronts else []
