"""The token mixer of one layer of the ShiftAddNAS translation supernet (arXiv 2205.08119), layout ``T x B x C``.

:class:`TokenMixer`: the candidate block types of one layer; ``attention+X`` splits the channels in halves, the
first through attention (width ``d / 2``, Q/K/V width ``space.attention_qkv_dim(block)``), the second through
``X`` (width ``d / 2``), and concatenates. The lightweight kernel has ``space.kernel_heads(block, num_heads)``
rows. No block keeps ``active_*`` state: every forward receives what the sampled layer is (block type, heads;
input widths are read from the input), and the slots serve each candidate under its block type's name.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from ..ops.hetero import SharingMode
from ..ops.kinds import BlockType
from ..ops.lightconv import Padding
from ..ops.quant import QuantConfig
from ..ops.shift import ShiftMode
from ..space import SearchSpace
from .attention import ElasticAttention
from .incremental import IncrementalState
from .lightweight import LightweightBranch
from .states import merge_states

__all__ = ["TokenMixer"]


class TokenMixer(nn.Module):
    """The candidate token mixers of one layer (:class:`BlockType`), over shared or owned slots.

    ``attention``: :class:`ElasticAttention` at width ``d``; ``lightweight_*``: :class:`LightweightBranch` at
    width ``d``; ``attention+lightweight_*``: ``concat(attention(x[:, :d/2]), lightweight(x[:, d/2:]))``. The
    rules are read, never restated: branch widths from :meth:`BlockType.branch_width`, the attention's Q/K/V
    width from ``space.attention_qkv_dim(block)``, the kernel rows from ``space.kernel_heads(block,
    num_heads)``. Users are named by block type.

    Args:
        blocks: the candidate block types.
        max_dim: allocated width ``d_max``.
        space: the search space (``qkv_dim`` and the block details).
        max_heads: most self-attention heads.
        kernel_size: lightweight kernel size (ignored without lightweight candidates).
        causal: decoder (causal attention and kernel) or encoder (centred kernel).
        sharing: weight sharing between the candidates.
        attention_dropout: dropout on attention probabilities.
        weight_dropout: DropConnect on the lightweight kernels.
        quant: quantisation-aware training of every candidate (see :mod:`.quantisers`).
        shift_weights: DeepShift variant of the shift linears (``"q"`` or ``"ps"``).

    Shape: x ``(T, B, d)`` -> ``(T, B, d)``.
    """

    def __init__(
        self,
        blocks: Sequence[BlockType],
        max_dim: int,
        space: SearchSpace,
        max_heads: int,
        kernel_size: Optional[int],
        causal: bool,
        sharing: SharingMode | str,
        attention_dropout: float,
        weight_dropout: float,
        quant: Optional[QuantConfig] = None,
        shift_weights: ShiftMode | str = ShiftMode.Q,
    ) -> None:
        super().__init__()
        self.blocks = tuple(BlockType(b) for b in blocks)
        self.causal = causal
        self.space = space
        attention_users = {
            b.value: (b.branch_width(max_dim), b.branch_width(max_dim), space.attention_qkv_dim(b))
            for b in self.blocks
            if b.has_attention
        }
        light_users = {b.value: (b, b.branch_width(max_dim)) for b in self.blocks if b.lightweight_part}
        kernel_rows = max((space.kernel_heads(b, max_heads) for b in self.blocks if b.lightweight_part), default=0)
        self.attention = (
            ElasticAttention(attention_users, sharing, attention_dropout, quant) if attention_users else None
        )
        if light_users and kernel_size is None:
            raise ValueError("kernel_size is required for lightweight blocks")
        padding = Padding.CAUSAL if causal else Padding.CENTRED
        self.lightweight = (
            LightweightBranch(
                light_users, kernel_rows, kernel_size, padding, sharing, weight_dropout, quant, shift_weights
            )
            if light_users
            else None
        )

    def forward(
        self,
        x: Tensor,
        block: BlockType,
        num_heads: int,
        padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[IncrementalState] = None,
    ) -> Tensor:
        if block not in self.blocks:
            raise ValueError(f"block must be one of {[b.value for b in self.blocks]}, got {BlockType(block).value!r}")
        common = dict(user=block.value, incremental_state=incremental_state)
        branch_inputs = iter(x.split(block.branch_width(x.size(-1)), dim=-1))  # (x,) or its two halves
        outputs = []
        if block.has_attention:
            a = next(branch_inputs)
            outputs.append(
                self.attention(a, a, num_heads=num_heads, key_padding_mask=padding_mask, causal=self.causal, **common)
            )
        if block.lightweight_part:
            kernel_heads = self.space.kernel_heads(block, num_heads)
            outputs.append(self.lightweight(next(branch_inputs), num_heads=kernel_heads, padding_mask=padding_mask,
                                            **common))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)

    def export(self, block: BlockType, dim: int, num_heads: int) -> Dict[str, Tensor]:
        """State dict of the standalone mixer of ``block`` at width ``dim``."""
        width = block.branch_width(dim)
        states = {}
        if block.has_attention:
            states["attention"] = self.attention.export(block.value, width, width)
        if block.lightweight_part:
            kernel_heads = self.space.kernel_heads(block, num_heads)
            states["lightweight"] = self.lightweight.export(block.value, width, kernel_heads)
        return merge_states(states)
