"""What one costed inference is: source and target lengths, beam, arithmetic width, vocabulary.

HAT's latency protocol and ShiftAddNAS's energy simulation (arXiv 2205.08119) cost one sentence: a 30-token
source, encoded once, and 30 autoregressive decoding steps. :class:`Workload` holds those settings; the cost
model keys its caches on it, so it is a frozen (hashable) dataclass.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ops.kinds import OpKind

__all__ = ["BIT_WIDTHS", "Workload"]

BIT_WIDTHS = (32, 16, 8, 4)
"""Operand widths a workload or a hardware profile may use."""


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Workload.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Workload:
    """One sentence through an encoder-decoder, batch 1.

    Args:
        src_len: source tokens, encoded in one pass.
        tgt_len: decoding steps (one new token per beam hypothesis per step, with incremental state).
        beam: hypotheses decoded in parallel (the decoder's batch; the encoder runs once).
        bits: width of every activation, weight and arithmetic operation (32: float, 8: the paper's 8-bit
            models); re-tags all counted operations, and must be a width of the hardware profile used.
        vocab_size: target vocabulary (the output projection computes one logit per word at every step).
        shift_weight_bits: stored width of a shift weight (sign and exponent: DeepShift's 5 bits); shift
            layers stream their weights at this width, every other layer at ``bits``.
    """

    src_len: int = 30
    tgt_len: int = 30
    beam: int = 1
    bits: int = 32
    vocab_size: int = 32000
    shift_weight_bits: int = 5

    def __post_init__(self) -> None:
        for name in ("src_len", "tgt_len", "beam", "bits", "vocab_size", "shift_weight_bits"):
            _positive(name, getattr(self, name))
        if self.bits not in BIT_WIDTHS:
            raise ValueError(f"Workload.bits={self.bits} not in allowed values {BIT_WIDTHS}")
        if not 2 <= self.shift_weight_bits <= self.bits:
            raise ValueError(
                f"Workload.shift_weight_bits={self.shift_weight_bits} must be in [2, bits={self.bits}]"
            )

    def weight_bits(self, kind: OpKind) -> int:
        """Stored width of a weight that ``kind`` computes with."""
        return self.shift_weight_bits if kind is OpKind.SHIFT else self.bits
