"""Energy of costed parts under a :class:`~.profile.HardwareProfile` (docs/method.md section 5).

``E(part) = sum_{(op, bits)} count * e_op(bits)  +  sum_level bits_moved(level) / 16 * e_level`` in pJ, where
``e_op`` is the profile's per-operation energy and ``e_level`` its cost of one 16-bit access (an access of
``b`` bits costs ``b / 16`` of it). The traffic comes from :mod:`.parts`.
"""
from __future__ import annotations

from typing import Dict, Tuple

from ..ops.kinds import OpKind
from .parts import LEVELS, Part
from .profile import HardwareProfile

__all__ = ["ENERGY_COMPONENTS", "PJ_PER_MJ", "part_energy_pj"]

ENERGY_COMPONENTS: Tuple[str, ...] = tuple(op.value for op in OpKind) + LEVELS
"""Keys of :func:`part_energy_pj`: compute energy by operator, then data movement by memory level."""

PJ_PER_MJ = 1e9


def part_energy_pj(part: Part, profile: HardwareProfile) -> Dict[str, float]:
    """Energy of ``part`` in pJ by component (:data:`ENERGY_COMPONENTS`).

    Raises:
        ValueError: ``part`` has operations at a bit width the profile lacks.
    """
    energy = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
    for (kind, bits), count in part.ops.ops.items():
        unit = profile.compute_pj.get((kind, bits))
        if unit is None:
            profile.check_bits(bits)
        energy[kind.value] += count * unit
    for level in LEVELS:
        energy[level] = part.traffic_bits.get(level, 0) * profile.memory_pj_per_bit(level)
    return energy
