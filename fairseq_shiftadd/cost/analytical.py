"""Analytical latency of costed parts on the profile's accelerator (a roofline per part).

Each part runs alone on the PE array (parts of a layer, layers and decoding steps are sequential):

* compute: ``sum_op terms(op) * cycles_per_term(op) / (pe_rows * pe_cols)`` cycles (every PE busy: ideal
  mapping, an optimistic bound);
* off-chip: ``dram_bits / (bandwidth / clock)`` cycles;
* the part takes ``max(compute, off-chip)`` cycles (double buffering overlaps the two).

A part's per-step work is the same at every decoding step except the attention matmuls over the growing
prefix, which move nothing off chip, so the whole-workload maximum equals the sum of per-step maxima.
Global-buffer, NoC and RF bandwidths are assumed sufficient. ``latency_ms = cycles / clock``.
"""
from __future__ import annotations

from .parts import Part
from .profile import AcceleratorProfile

__all__ = ["part_cycles", "cycles_to_ms"]


def part_cycles(part: Part, accelerator: AcceleratorProfile) -> float:
    """Cycles of ``part``: ``max(compute cycles, DRAM cycles)``."""
    compute = sum(n * accelerator.cycles_per_term[kind] for kind, n in part.terms.items()) / accelerator.num_pes
    memory = part.traffic_bits.get("dram", 0) / accelerator.dram_bits_per_cycle
    return max(compute, memory)


def cycles_to_ms(cycles: float, accelerator: AcceleratorProfile) -> float:
    """Milliseconds of ``cycles`` at the accelerator's clock."""
    return cycles / (accelerator.clock_mhz * 1e3)
