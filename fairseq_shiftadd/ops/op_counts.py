"""Operation counts that operators report about themselves.

Every operator in :mod:`fairseq_shiftadd.ops` has ``op_counts(input_shape) -> OpCounts``: the
arithmetic it performs for one forward pass on an input of that shape, by operation kind and bit
width. The hardware cost model sums these, so they follow what the code computes:

* a multiply-accumulate dot product of length K costs K mults and K - 1 adds, plus one add for a bias;
* a shift dot product costs K shifts and K - 1 adds (a sign is folded into add/subtract);
* an adder (negative L1) dot product costs K subtractions and K - 1 accumulations, i.e. 2K - 1 adds
  (the absolute value is a conditional negation, folded into the accumulation);
* the bit width of an operation is the width of the operands it combines (32 for float, the fake
  quantisation width when an operator quantises its inputs).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, Mapping, Tuple

from .kinds import OpKind

__all__ = ["OpCounts"]


@dataclass(frozen=True)
class OpCounts:
    """A bag of operations: ``{(OpKind, bits): count}``; immutable, summable and scalable."""

    ops: Mapping[Tuple[OpKind, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean: Dict[Tuple[OpKind, int], int] = {}
        for (kind, bits), count in self.ops.items():
            kind = OpKind(kind)
            if int(count) < 0:
                raise ValueError(f"OpCounts: negative count {count} for ({kind.value}, {bits})")
            if int(count):
                clean[(kind, int(bits))] = clean.get((kind, int(bits)), 0) + int(count)
        object.__setattr__(self, "ops", dict(sorted(clean.items(), key=lambda kv: (kv[0][0].value, kv[0][1]))))

    @classmethod
    def of(cls, kind: OpKind, bits: int, count: int) -> "OpCounts":
        return cls({(OpKind(kind), bits): count})

    @classmethod
    def dot_products(cls, kind: OpKind, bits: int, outputs: int, length: int, bias: bool = False) -> "OpCounts":
        """``outputs`` dot products of ``length`` terms computed with operator ``kind`` (module rules)."""
        accumulate = outputs * (max(length - 1, 0) + int(bias))
        if kind is OpKind.MULT:
            return cls({(OpKind.MULT, bits): outputs * length, (OpKind.ADD, bits): accumulate})
        if kind is OpKind.SHIFT:
            return cls({(OpKind.SHIFT, bits): outputs * length, (OpKind.ADD, bits): accumulate})
        return cls({(OpKind.ADD, bits): outputs * length + accumulate})

    @classmethod
    def total_of(cls, parts: Iterable["OpCounts"]) -> "OpCounts":
        out: Counter = Counter()
        for part in parts:
            out.update(part.ops)
        return cls(dict(out))

    def __add__(self, other: "OpCounts") -> "OpCounts":
        return OpCounts.total_of((self, other))

    def __mul__(self, factor: int) -> "OpCounts":
        if int(factor) != factor or factor < 0:
            raise ValueError(f"OpCounts can only be scaled by a non-negative integer, got {factor}")
        return OpCounts({key: count * int(factor) for key, count in self.ops.items()})

    __rmul__ = __mul__

    def count(self, kind: OpKind, bits: int | None = None) -> int:
        """Operations of ``kind`` (at ``bits`` only, if given)."""
        kind = OpKind(kind)
        return sum(c for (k, b), c in self.ops.items() if k is kind and (bits is None or b == bits))

    def to_dict(self) -> Dict[str, int]:
        """JSON-friendly form: ``{"mult@32": n, "add@8": m, ...}``."""
        return {f"{kind.value}@{bits}": count for (kind, bits), count in self.ops.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> "OpCounts":
        ops = {}
        for key, count in data.items():
            kind, sep, bits = key.partition("@")
            if not sep:
                raise ValueError(f"OpCounts key {key!r} is not of the form 'kind@bits'")
            ops[(OpKind(kind), int(bits))] = count
        return cls(ops)
