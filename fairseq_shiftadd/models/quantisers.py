"""Per-candidate fake quantisers of the translation models (quantisation-aware training, ``--quant-bits``).

Every linear slot fake-quantises the operands of each user with :func:`~fairseq_shiftadd.ops.quant.operand_fake_quant`
of the user's op (mult: affine input, per-output-channel symmetric weight; shift: affine input, the powers of two as
they are, 5-bit exponents; add: input and ``a W`` on one symmetric grid), after slicing; the lightweight mixers
quantise their input and normalised kernel alike (product or shared grid). Each user keeps its own running input
range (``operand_quant.<user>``, ``mixer_quant.<user>``; exported with the weights). Not quantised: the embeddings
and the tied output projection, the attention score and context products, LayerNorms, softmax, biases.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from torch import Tensor, nn

from ..ops.kinds import OpKind
from ..ops.quant import QuantConfig, operand_fake_quant
from .states import prefixed

__all__ = ["operand_quantisers", "quantised", "quantiser_state"]


def operand_quantisers(ops: Mapping[str, OpKind], quant: Optional[QuantConfig]) -> Optional[nn.ModuleDict]:
    """One operand quantiser per user (``None`` without ``quant``)."""
    if quant is None:
        return None
    return nn.ModuleDict({name: operand_fake_quant(op, quant) for name, op in ops.items()})


def quantised(quantisers: Optional[nn.ModuleDict], user: str, x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
    """``(x, weight)`` fake-quantised by ``user``'s quantiser, or as they are."""
    return (x, weight) if quantisers is None else quantisers[user](x, weight)


def quantiser_state(quantisers: Optional[nn.ModuleDict], user: str, prefix: str) -> Dict[str, Tensor]:
    """The running range of ``user``'s quantiser under the standalone module's keys (empty without one)."""
    if quantisers is None:
        return {}
    return prefixed(f"{prefix}.{user}", quantisers[user].state_dict())
