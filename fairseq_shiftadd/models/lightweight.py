"""The lightweight branch of the ShiftAddNAS translation supernet (arXiv 2205.08119), layout ``T x B x C``.

:class:`LightweightBranch`: ``linear1 (C -> C) -> [shift linear (C -> C)] -> mixer -> linear2 (C -> C)`` where the
mixer is the lightweight conv (``lightweight_conv``) or its adder form (``lightweight_add``,
``lightweight_shiftadd``): ``y[t, c] = sum_j op(h[t + j - pad, c], w~[h(c), j])`` with the kernel
``w~ = dropconnect(softmax(W[:H]))``, ``H`` = the kernel rows, centred in the encoder, causal in the decoder
(:mod:`~fairseq_shiftadd.ops.lightconv`; incremental steps use the same primitive, never a product for adder
blocks). Its linears and kernel are :class:`~.sharing.WeightSlot` s, one user per candidate block type.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import torch.nn.functional as F
from fairseq.incremental_decoding_utils import with_incremental_state
from torch import Tensor, nn

from ..ops.hetero import SharingMode
from ..ops.kinds import BlockType, OpKind
from ..ops.lightconv import BUFFER_BATCH_DIM, Padding, causal_mix_step, lightweight_mix
from ..ops.quant import QuantConfig
from ..ops.shift import ShiftMode
from .incremental import IncrementalState
from .quantisers import operand_quantisers, quantised, quantiser_state
from .sharing import ADD_ETA, ADD_GRAD_NORM, SlotUser, WeightSlot
from .states import merge_states

__all__ = ["LightweightBranch"]


def _kernel_init(weight: Tensor) -> None:
    """Xavier-uniform with the fans of an ``(H, 1, K)`` depthwise conv weight (fairseq's lightweight conv)."""
    nn.init.xavier_uniform_(weight.view(weight.size(0), 1, weight.size(1)))


@with_incremental_state
class LightweightBranch(nn.Module):
    """``linear1 -> [shift linear] -> lightweight mixer -> linear2`` at the input's width ``C``.

    ``h = x W1[:C, :C]^T + b1`` (then ``h = h q(Ws)[:C, :C]^T + bs`` for shiftadd), padded positions zeroed,
    ``m[t, c] = sum_j op(h[t + j - pad, c], w~[h(c), j])`` with ``w~ = dropconnect(softmax(W_k[:H]))`` and
    ``op`` a product (conv) or ``-|a - w|`` (add, shiftadd), then ``y = m W2[:C, :C]^T + b2``. Incremental
    decoding (causal only) buffers the last ``K - 1`` mixer inputs and mixes the window with the same primitive.

    Args:
        users: user name -> ``(block type, max width)`` (a block type with a lightweight branch).
        max_heads: rows of the kernel.
        kernel_size: ``K`` (odd).
        padding: ``"centred"`` (encoder) or ``"causal"`` (decoder).
        sharing: weight sharing between the users.
        weight_dropout: DropConnect probability on the normalised kernel (training only).
        quant: fake-quantise the linears and the mixer's input and kernel (product or shared grid).
        shift_weights: DeepShift variant of the shift linear (``"q"`` or ``"ps"``, see :class:`WeightSlot`).

    Shape: x ``(T, B, C)``, padding_mask ``(B, T)`` -> ``(T, B, C)``.
    """

    def __init__(
        self,
        users: Mapping[str, Tuple[BlockType, int]],
        max_heads: int,
        kernel_size: int,
        padding: Padding | str,
        sharing: SharingMode | str,
        weight_dropout: float,
        quant: Optional[QuantConfig] = None,
        shift_weights: ShiftMode | str = ShiftMode.Q,
    ) -> None:
        super().__init__()
        self.kinds = {name: kind for name, (kind, _) in users.items()}
        square = {name: (width, width) for name, (_, width) in users.items()}
        self.linear1 = WeightSlot({n: SlotUser(OpKind.MULT, s) for n, s in square.items()}, sharing, quant=quant)
        shift_users = {n: SlotUser(OpKind.SHIFT, s) for n, s in square.items() if self.kinds[n].has_shift}
        self.shift = WeightSlot(shift_users, sharing, quant=quant, shift_weights=shift_weights) if shift_users else None
        self.kernel = WeightSlot(
            {n: SlotUser(self.kinds[n].mixer_op, (max_heads, kernel_size)) for n in users}, sharing, False, _kernel_init
        )
        self.mixer_quant = operand_quantisers({n: self.kinds[n].mixer_op for n in users}, quant)
        self.linear2 = WeightSlot({n: SlotUser(OpKind.MULT, s) for n, s in square.items()}, sharing, quant=quant)
        self.kernel_size = kernel_size
        self.padding = Padding(padding)
        self.weight_dropout = weight_dropout

    def forward(
        self,
        x: Tensor,
        *,
        user: str,
        num_heads: int,
        padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[IncrementalState] = None,
    ) -> Tensor:
        width = x.size(-1)
        if width % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the lightweight width {width}")
        h = self._masked(self.linear1.linear(self._masked(x, padding_mask), user, width), padding_mask)
        if self.kinds[user].has_shift:
            h = self._masked(self.shift.linear(h, user, width), padding_mask)
        weight, _ = self.kernel.read(user)
        if num_heads > weight.size(0):
            raise ValueError(f"num_heads={num_heads} exceeds the {weight.size(0)} allocated kernel rows")
        kernel = F.dropout(F.softmax(weight[:num_heads], dim=-1), p=self.weight_dropout, training=self.training)
        h, kernel = quantised(self.mixer_quant, user, h, kernel)
        op = self.kinds[user].mixer_op
        eta = ADD_ETA if op is OpKind.ADD else None
        if incremental_state is None:
            mixed = lightweight_mix(h, kernel, op, self.padding, eta, ADD_GRAD_NORM)
        else:
            if self.padding is not Padding.CAUSAL or h.size(0) != 1:
                raise ValueError("incremental_state needs causal padding and one position, x (1, B, C)")
            buffer = self.get_incremental_state(incremental_state, "buffer")
            window = None if buffer is None else buffer["window"]
            mixed, window = causal_mix_step(h, kernel, op, window, eta, ADD_GRAD_NORM)
            self.set_incremental_state(incremental_state, "buffer", {"window": window})
        return self.linear2.linear(mixed, user, width)

    @staticmethod
    def _masked(x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        return x if padding_mask is None else x.masked_fill(padding_mask.t().unsqueeze(-1), 0.0)

    def export(self, user: str, width: int, num_heads: int) -> Dict[str, Tensor]:
        """State dict of the standalone branch of ``user`` at ``width`` with ``num_heads`` kernel rows."""
        shapes = {"linear1": (width, width), "linear2": (width, width), "kernel": (num_heads, self.kernel_size)}
        if self.kinds[user].has_shift:
            shapes["shift"] = (width, width)
        states = {name: getattr(self, name).export(user, shape) for name, shape in shapes.items()}
        return {**merge_states(states), **quantiser_state(self.mixer_quant, user, "mixer_quant")}

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """Reorder the buffered mixer inputs along the batch axis (beam search)."""
        buffer = self.get_incremental_state(incremental_state, "buffer")
        if buffer is not None:
            window = buffer["window"].index_select(BUFFER_BATCH_DIM, new_order)
            self.set_incremental_state(incremental_state, "buffer", {"window": window})
