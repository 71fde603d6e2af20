"""The elastic FFN of the ShiftAddNAS translation supernet (arXiv 2205.08119): mult, shift or add linears.

:class:`ElasticFFN`: ``fc2(dropout(relu(fc1(x))))`` with ``fc1: d -> ffn_dim``, ``fc2: ffn_dim -> d`` computed
by multiplication, by shifts (signed power-of-two weights) or by additions (negative L1,
``y = -sum_k |x_k - w_k| + b``). The adder output is large and negative (``-K`` times a typical
``|x - w|``), so every add linear of the FFN is followed by a LayerNorm over its outputs (AdderNet follows
add layers with BatchNorm); without it the ReLU after ``fc1`` zeroes everything. These norms belong to the
``add`` FFN only (supernet and standalone alike). Because of them the add linears compute their outputs
centred over ``m`` (:func:`~fairseq_shiftadd.ops.adder.add_matmul` with ``centre_outputs``), which differs from
``-sum_k |x_k - w_k| + b`` by a per-row constant that the LayerNorm removes exactly: the FFN computes the same
function, without the float rounding of a 400-850 offset; and they read ``a W``
(:func:`~.sharing.add_weight_scale`).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.hetero import SharingMode
from ..ops.kinds import OpKind
from ..ops.quant import QuantConfig
from ..ops.shift import ShiftMode
from .norm import ElasticLayerNorm
from .sharing import SlotUser, WeightSlot
from .states import merge_states

__all__ = ["ElasticFFN"]


class ElasticFFN(nn.Module):
    """Position-wise FFN ``fc2(dropout(relu(fc1(x))))`` computed by ``mult``, ``shift`` or ``add``.

    ``fc1 = W1[:f, :d]``, ``fc2 = W2[:d, :f]`` (``f`` = the sampled FFN width, ``d`` = the input width); for ``add``
    each linear is followed by a LayerNorm over its outputs (``fc1_add_norm`` of width ``f``, ``fc2_add_norm`` of width
    ``d``): ``fc(x) = LN(-||x - W||_1 + b)``; without them the add FFN diverged (non-finite gradients within the first
    updates on Multi30k). The add linears compute ``-||x - a W_m||_1 + b_m`` centred over ``m`` (equal after the
    LayerNorm) with ``a = add_weight_scale`` (see :meth:`WeightSlot.linear`). Users are named by op.

    Args:
        ops: the candidate FFN ops.
        max_dim: allocated model width.
        max_ffn_dim: allocated hidden width.
        sharing: weight sharing between the ops.
        quant: fake-quantise the operands of ``fc1`` and ``fc2`` (:class:`WeightSlot`).
        shift_weights: DeepShift variant of the shift FFN (``"q"`` or ``"ps"``).

    Shape: x ``(T, B, d)`` -> ``(T, B, d)``.
    """

    def __init__(
        self,
        ops: Sequence[OpKind],
        max_dim: int,
        max_ffn_dim: int,
        sharing: SharingMode | str,
        quant: Optional[QuantConfig] = None,
        shift_weights: ShiftMode | str = ShiftMode.Q,
    ) -> None:
        super().__init__()
        self.ops = tuple(OpKind(op) for op in ops)
        fc1 = {op.value: SlotUser(op, (max_ffn_dim, max_dim)) for op in self.ops}
        fc2 = {op.value: SlotUser(op, (max_dim, max_ffn_dim)) for op in self.ops}
        self.fc1 = WeightSlot(fc1, sharing, quant=quant, shift_weights=shift_weights)
        self.fc2 = WeightSlot(fc2, sharing, quant=quant, shift_weights=shift_weights)
        has_add = OpKind.ADD in self.ops
        self.fc1_add_norm = ElasticLayerNorm(max_ffn_dim) if has_add else None
        self.fc2_add_norm = ElasticLayerNorm(max_dim) if has_add else None

    def forward(self, x: Tensor, op: OpKind, ffn_dim: int, activation_dropout: float) -> Tensor:
        if op not in self.ops:
            raise ValueError(f"op must be one of {[o.value for o in self.ops]}, got {OpKind(op).value!r}")
        h = self._project(self.fc1, self.fc1_add_norm, x, op, ffn_dim)
        h = F.dropout(F.relu(h), p=activation_dropout, training=self.training)
        return self._project(self.fc2, self.fc2_add_norm, h, op, x.size(-1))

    @staticmethod
    def _project(slot: WeightSlot, norm: Optional[ElasticLayerNorm], x: Tensor, op: OpKind, out_dim: int) -> Tensor:
        y = slot.linear(x, op.value, out_dim)
        return norm(y) if op is OpKind.ADD else y

    def export(self, op: OpKind, dim: int, ffn_dim: int) -> Dict[str, Tensor]:
        """State dict of the standalone FFN of ``op`` at these widths."""
        states = {"fc1": self.fc1.export(op.value, (ffn_dim, dim)), "fc2": self.fc2.export(op.value, (dim, ffn_dim))}
        if op is OpKind.ADD:
            states.update(fc1_add_norm=self.fc1_add_norm.export(ffn_dim), fc2_add_norm=self.fc2_add_norm.export(dim))
        return merge_states(states)
