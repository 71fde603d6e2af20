"""Elastic multi-head attention of the ShiftAddNAS translation supernet (arXiv 2205.08119), layout ``T x B x C``.

:class:`ElasticAttention`: multi-head attention with a fixed Q/K/V width ``qkv`` (heads only change
``head_dim = qkv / heads``); ``q = x W_q[:qkv, :d]^T + b_q``, likewise ``k``, ``v`` from the key input, and
``y = softmax(q k^T / sqrt(head_dim)) v W_o[:d, :qkv]^T + b_o``. Self-attention (causal in the decoder, with a
fairseq key/value cache for incremental decoding) or encoder-decoder attention (static key/value, cached
once per decode). Its four projections are :class:`~.sharing.WeightSlot` s, one user per candidate.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.incremental_decoding_utils import with_incremental_state
from torch import Tensor, nn

from ..ops.hetero import SharingMode
from ..ops.kinds import OpKind
from ..ops.quant import QuantConfig
from .incremental import IncrementalState
from .sharing import SlotUser, WeightSlot
from .states import merge_states

__all__ = ["ElasticAttention"]


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(T, B, H * hd)`` -> ``(B, H, T, hd)``."""
    T, B, width = x.shape
    return x.view(T, B, num_heads, width // num_heads).permute(1, 2, 0, 3)


@with_incremental_state
class ElasticAttention(nn.Module):
    """Multi-head attention with a fixed Q/K/V width per user; projections front-sliced (HAT).

    ``y = concat_h softmax(q_h k_h^T / sqrt(hd) + mask) v_h  W_o[:d, :qkv]^T + b_o`` with ``q = x W_q[:qkv, :d]^T
    + b_q`` and ``k, v`` likewise from the key input (width ``d_k``); ``hd = qkv / heads``. ``qkv`` is fixed per
    user (the token mixer gives each block type ``space.attention_qkv_dim(block)``). The attention itself
    is :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels; dropout on the probabilities).

    Incremental decoding (fairseq ``incremental_state``): self-attention appends the new key/value to a cache
    ``(B, H, t, hd)``; with ``static_kv`` (encoder-decoder) the key/value are computed on the first step and
    reused. :meth:`reorder_incremental_state` reorders the cache on the batch axis.

    Args:
        users: user name -> ``(max_query_dim, max_key_dim, qkv)``.
        sharing: weight sharing between the users.
        dropout: dropout on the attention probabilities (training only).
        quant: fake-quantise the four projections (:class:`WeightSlot`).

    Shape: query ``(T, B, d)``, key ``(S, B, d_k)``, key_padding_mask ``(B, S)`` -> ``(T, B, d)``.
    """

    def __init__(
        self,
        users: Mapping[str, Tuple[int, int, int]],
        sharing: SharingMode | str,
        dropout: float,
        quant: Optional[QuantConfig] = None,
    ) -> None:
        super().__init__()
        self.qkv = {name: qkv for name, (_, _, qkv) in users.items()}
        shapes = {
            "q": {n: (qkv, dq) for n, (dq, _, qkv) in users.items()},
            "k": {n: (qkv, dk) for n, (_, dk, qkv) in users.items()},
            "v": {n: (qkv, dk) for n, (_, dk, qkv) in users.items()},
            "out": {n: (dq, qkv) for n, (dq, _, qkv) in users.items()},
        }
        for name, by_user in shapes.items():
            slot_users = {n: SlotUser(OpKind.MULT, shape) for n, shape in by_user.items()}
            setattr(self, name, WeightSlot(slot_users, sharing, quant=quant))
        self.dropout = dropout

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        *,
        user: str,
        num_heads: int,
        key_padding_mask: Optional[Tensor] = None,
        causal: bool = False,
        static_kv: bool = False,
        incremental_state: Optional[IncrementalState] = None,
    ) -> Tensor:
        qkv = self.qkv[user]
        if qkv % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the Q/K/V width {qkv}")
        T, B, width = query.shape
        q = _split_heads(self.q.linear(query, user, qkv), num_heads)
        cache = self._get_input_buffer(incremental_state) if incremental_state is not None else {}
        if static_kv and "key" in cache:
            k, v = cache["key"], cache["value"]
        else:
            k = _split_heads(self.k.linear(key, user, qkv), num_heads)
            v = _split_heads(self.v.linear(key, user, qkv), num_heads)
            if not static_kv and "key" in cache:
                k, v = torch.cat([cache["key"], k], dim=2), torch.cat([cache["value"], v], dim=2)
        if incremental_state is not None:
            self._set_input_buffer(incremental_state, {"key": k, "value": v})
        causal = causal and incremental_state is None  # one new query sees the whole cache
        keep = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
        if causal and keep is not None:
            keep = keep & torch.ones(T, k.size(2), dtype=torch.bool, device=query.device).tril()
            causal = False
        dropout = self.dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout, is_causal=causal)
        return self.out.linear(context.permute(2, 0, 1, 3).reshape(T, B, qkv), user, width)

    def export(self, user: str, query_dim: int, key_dim: int) -> Dict[str, Tensor]:
        """State dict of the standalone attention of ``user`` at these widths."""
        qkv = self.qkv[user]
        shapes = {"q": (qkv, query_dim), "k": (qkv, key_dim), "v": (qkv, key_dim), "out": (query_dim, qkv)}
        return merge_states({name: getattr(self, name).export(user, shape) for name, shape in shapes.items()})

    def _get_input_buffer(self, incremental_state: Optional[IncrementalState]) -> Dict[str, Optional[Tensor]]:
        return self.get_incremental_state(incremental_state, "attn_state") or {}

    def _set_input_buffer(self, incremental_state: IncrementalState, buffer: Dict[str, Optional[Tensor]]) -> None:
        self.set_incremental_state(incremental_state, "attn_state", buffer)

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """Reorder the cached keys and values along the batch axis (beam search)."""
        cache = self._get_input_buffer(incremental_state)
        if cache:
            self._set_input_buffer(incremental_state, {k: v.index_select(0, new_order) for k, v in cache.items()})
