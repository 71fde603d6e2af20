"""Encoder and decoder layers of the ShiftAddNAS translation supernet (arXiv 2205.08119), post-norm as the paper.

A layer is allocated for a set of candidates (:class:`LayerCandidates`: block types, FFN ops, largest sizes)
and runs the one its :class:`~fairseq_shiftadd.space.LayerConfig` argument names::

    x = mixer_norm(x + dropout(mixer(x)))                         (TokenMixer: the block type, heads)
    x = cross_norm(x + dropout(cross_attention(x, E)))            (decoder only; E: encoder outputs)
    x = ffn_norm(x + dropout(ffn(x)))                             (ElasticFFN: the op, ffn_dim)

``E`` is the concatenation along time of the last ``n`` encoder layers' outputs, ``n = 1, 2, 3`` for
``enc_dec_span = -1, 1, 2`` (HAT's arbitrary encoder-decoder attention), last layer first; the padding mask
is repeated ``n`` times alike. A supernet allocates the space's candidates at its largest sizes; a standalone
subnet allocates one candidate at the subnet's exact sizes (:meth:`LayerCandidates.of_subnet`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.hetero import SharingMode
from ..ops.kinds import BlockType, OpKind
from ..ops.quant import QuantConfig
from ..ops.shift import ShiftMode
from ..space import LayerConfig, SearchSpace, SubnetConfig, attended_encoder_layers
from .attention import ElasticAttention
from .ffn import ElasticFFN
from .incremental import IncrementalState
from .mixer import TokenMixer
from .norm import ElasticLayerNorm
from .states import merge_states

__all__ = ["LayerCandidates", "EncoderLayer", "DecoderLayer"]

_CROSS = "cross"  # user name of the encoder-decoder attention


@dataclass(frozen=True)
class LayerCandidates:
    """What one layer may compute: its candidate sets and the sizes its weights are allocated at.

    Args:
        blocks: candidate token mixers.
        ffn_ops: candidate FFN ops.
        max_embed_dim: largest model width of the layer's side.
        max_ffn_dim: largest FFN width.
        max_heads: most self-attention heads of the layer.
        space: the search space, whose block details (:meth:`~fairseq_shiftadd.space.SearchSpace.attention_qkv_dim`,
            :meth:`~fairseq_shiftadd.space.SearchSpace.kernel_heads`) shape the mixers.
        kernel_size: lightweight kernel size (``None`` without lightweight candidates).
        max_encoder_embed_dim: decoder layers: largest width of the attended encoder outputs.
    """

    blocks: Tuple[BlockType, ...]
    ffn_ops: Tuple[OpKind, ...]
    max_embed_dim: int
    max_ffn_dim: int
    max_heads: int
    space: SearchSpace
    kernel_size: Optional[int] = None
    max_encoder_embed_dim: Optional[int] = None

    @classmethod
    def of_space(cls, space: SearchSpace, side: str, index: int) -> "LayerCandidates":
        """Layer ``index`` of the ``side`` ("encoder" / "decoder") of a supernet over ``space``."""
        encoder = _side(side)
        blocks = space.encoder_blocks if encoder else space.decoder_blocks
        return cls(
            blocks=blocks,
            ffn_ops=space.ffn_ops,
            max_embed_dim=space.max_encoder_embed_dim if encoder else space.max_decoder_embed_dim,
            max_ffn_dim=space.max_encoder_ffn_dim if encoder else space.max_decoder_ffn_dim,
            max_heads=space.max_encoder_heads if encoder else space.max_decoder_self_heads,
            space=space,
            kernel_size=_kernel_size(space, blocks, index),
            max_encoder_embed_dim=None if encoder else space.max_encoder_embed_dim,
        )

    @classmethod
    def of_subnet(cls, space: SearchSpace, sub: SubnetConfig, side: str, index: int) -> "LayerCandidates":
        """Layer ``index`` of ``side`` of the standalone ``sub``: one candidate, at its exact sizes."""
        encoder = _side(side)
        layer = (sub.encoder if encoder else sub.decoder)[index]
        return cls(
            blocks=(layer.block,),
            ffn_ops=(layer.ffn_op,),
            max_embed_dim=sub.encoder_embed_dim if encoder else sub.decoder_embed_dim,
            max_ffn_dim=layer.ffn_dim,
            max_heads=layer.num_heads,
            space=space,
            kernel_size=_kernel_size(space, (layer.block,), index),
            max_encoder_embed_dim=None if encoder else sub.encoder_embed_dim,
        )


def _side(side: str) -> bool:
    if side not in ("encoder", "decoder"):
        raise ValueError(f"side must be 'encoder' or 'decoder', got {side!r}")
    return side == "encoder"


def _kernel_size(space: SearchSpace, blocks: Sequence[BlockType], index: int) -> Optional[int]:
    """The lightweight kernel size of layer ``index`` (:meth:`BlockType.kernel_size`; ``None`` without lightweight
    candidates)."""
    return next((size for b in blocks if (size := b.kernel_size(space.kernel_sizes, index)) is not None), None)


class _Layer(nn.Module):
    """What encoder and decoder layers share: token mixer, FFN, their two post-norms.

    Args:
        cand: the layer's candidates and allocated sizes.
        sharing: weight sharing between the candidates.
        attention_dropout: dropout on attention probabilities.
        weight_dropout: DropConnect on lightweight kernels.
        shift_weights: DeepShift variant of the shift linears, ``"q"`` (default) or ``"ps"`` (``sharing = none``).
        quant: quantisation-aware training (``None``: float), see :mod:`.quantisers`.
    """

    causal: bool  # decoder layers: causal attention and kernels

    def __init__(
        self,
        cand: LayerCandidates,
        sharing: SharingMode | str,
        attention_dropout: float,
        weight_dropout: float,
        shift_weights: ShiftMode | str = ShiftMode.Q,
        quant: Optional[QuantConfig] = None,
    ) -> None:
        super().__init__()
        self.candidates = cand
        self.attention_dropout = attention_dropout
        self.quant = quant
        self.mixer = TokenMixer(
            cand.blocks, cand.max_embed_dim, cand.space, cand.max_heads, cand.kernel_size, self.causal, sharing,
            attention_dropout, weight_dropout, quant, shift_weights,
        )
        self.mixer_norm = ElasticLayerNorm(cand.max_embed_dim)
        self.ffn = ElasticFFN(cand.ffn_ops, cand.max_embed_dim, cand.max_ffn_dim, sharing, quant, shift_weights)
        self.ffn_norm = ElasticLayerNorm(cand.max_embed_dim)

    def _mix(
        self,
        x: Tensor,
        cfg: LayerConfig,
        dropout: float,
        padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[IncrementalState] = None,
    ) -> Tensor:
        y = self.mixer(x, cfg.block, cfg.num_heads, padding_mask, incremental_state)
        return self.mixer_norm(x + F.dropout(y, p=dropout, training=self.training))

    def _feed_forward(self, x: Tensor, cfg: LayerConfig, dropout: float, activation_dropout: float) -> Tensor:
        y = self.ffn(x, cfg.ffn_op, cfg.ffn_dim, activation_dropout)
        return self.ffn_norm(x + F.dropout(y, p=dropout, training=self.training))

    def sharing_regularisers(self, cfg: LayerConfig) -> List[Tensor]:
        """The sharing regularisers of the weights that candidate ``cfg`` reads as add-linear weights: ``fc1``,
        ``fc2`` of an add FFN (:meth:`~.sharing.WeightSlot.regulariser`; 0 unless heterogeneous).

        The adder mixers' kernels are not among them: an adder mixer subtracts the softmax-normalised kernel
        (non-negative, each row summing to 1), whose values cannot follow the zero-centred Laplace shape
        that the sharing regulariser targets (AdderNet's trained add weights), and the logits before the
        softmax are not what the adder reads; their ``T_add`` is trained by the task loss alone.
        """
        if cfg.ffn_op is not OpKind.ADD:
            return []
        return [slot.regulariser(cfg.ffn_op.value) for slot in (self.ffn.fc1, self.ffn.fc2)]

    def export(self, cfg: LayerConfig, dim: int) -> Dict[str, Tensor]:
        """State dict of the standalone layer ``cfg`` at model width ``dim`` (weights as computed here)."""
        return merge_states({
            "mixer": self.mixer.export(cfg.block, dim, cfg.num_heads),
            "mixer_norm": self.mixer_norm.export(dim),
            "ffn": self.ffn.export(cfg.ffn_op, dim, cfg.ffn_dim),
            "ffn_norm": self.ffn_norm.export(dim),
        })


class EncoderLayer(_Layer):
    """Encoder layer: mixer then FFN, each ``x = norm(x + dropout(f(x)))``; centred lightweight kernels.

    Args: as ``_Layer`` (``cand``, ``sharing``, ``attention_dropout``, ``weight_dropout``, ``shift_weights``,
    ``quant``).

    Shape: x ``(T, B, d)``, padding_mask ``(B, T)`` (``True`` = pad) -> ``(T, B, d)``.
    """

    causal = False

    def forward(
        self, x: Tensor, cfg: LayerConfig, padding_mask: Optional[Tensor], dropout: float, activation_dropout: float
    ) -> Tensor:
        x = self._mix(x, cfg, dropout, padding_mask=padding_mask)
        return self._feed_forward(x, cfg, dropout, activation_dropout)


class DecoderLayer(_Layer):
    """Decoder layer: causal mixer, encoder-decoder attention over the last ``n`` encoder outputs, FFN; post-norm.

    Args: as :class:`EncoderLayer`; ``cand.max_encoder_embed_dim`` is the key width of the cross attention.

    Shape: x ``(T, B, d)``; encoder_states: per encoder layer ``(S, B, d_enc)``; encoder_padding_mask
    ``(B, S)`` -> ``(T, B, d)``. Incremental decoding: ``T = 1`` with a shared ``incremental_state``.

    Raises:
        ValueError: ``cand.max_encoder_embed_dim`` is missing.
    """

    causal = True

    def __init__(self, cand: LayerCandidates, *args: Any, **kwargs: Any) -> None:
        super().__init__(cand, *args, **kwargs)
        if cand.max_encoder_embed_dim is None:
            raise ValueError("decoder layer candidates need max_encoder_embed_dim")
        dims = (cand.max_embed_dim, cand.max_encoder_embed_dim, cand.space.qkv_dim)
        self.cross_attention = ElasticAttention({_CROSS: dims}, SharingMode.NONE, self.attention_dropout, self.quant)
        self.cross_norm = ElasticLayerNorm(cand.max_embed_dim)

    def forward(
        self,
        x: Tensor,
        cfg: LayerConfig,
        encoder_states: Sequence[Tensor],
        encoder_padding_mask: Optional[Tensor],
        dropout: float,
        activation_dropout: float,
        incremental_state: Optional[IncrementalState] = None,
    ) -> Tensor:
        x = self._mix(x, cfg, dropout, incremental_state=incremental_state)
        n = attended_encoder_layers(cfg.enc_dec_span)
        if n > len(encoder_states):
            raise ValueError(
                f"enc_dec_span={cfg.enc_dec_span} attends to {n} encoder layers, got {len(encoder_states)}"
            )
        memory = torch.cat([encoder_states[-1 - i] for i in range(n)], dim=0)
        mask = None if encoder_padding_mask is None else encoder_padding_mask.repeat(1, n)
        y = self.cross_attention(
            x, memory, user=_CROSS, num_heads=cfg.cross_heads, key_padding_mask=mask, static_kv=True,
            incremental_state=incremental_state,
        )
        x = self.cross_norm(x + F.dropout(y, p=dropout, training=self.training))
        return self._feed_forward(x, cfg, dropout, activation_dropout)

    def export(self, cfg: LayerConfig, dim: int, encoder_dim: int) -> Dict[str, Tensor]:  # type: ignore[override]
        """State dict of the standalone layer ``cfg`` at widths ``dim`` (decoder) and ``encoder_dim``."""
        return {
            **super().export(cfg, dim),
            **merge_states({
                "cross_attention": self.cross_attention.export(_CROSS, dim, encoder_dim),
                "cross_norm": self.cross_norm.export(dim),
            }),
        }
