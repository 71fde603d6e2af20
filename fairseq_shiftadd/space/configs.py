"""The three configs of the NLP search space (arXiv 2205.08119, docs/method.md section 2) and the space's rules.

A :class:`SearchSpace` lists the allowed values of every gene; a :class:`SubnetConfig` is one point of it: two
embedding widths plus one frozen :class:`LayerConfig` per encoder and decoder layer (the decoder depth is
``len(decoder)``). All three are frozen :class:`~.serialise.Serialisable` dataclasses of ints, strings, enums and
tuples, so they are hashable (fitness caches key on them) and round-trip through dicts, JSON and YAML, with the
enums spelled as their method names (``"attention+lightweight_add"``, ``"shift"``).

Genes. Per model: ``encoder_embed_dim``, ``decoder_embed_dim`` and the two depths. Per layer: ``block`` (the token
mixer), ``ffn_dim``, ``num_heads`` (self-attention heads, also the lightweight-conv heads of the layer unless the
block details fix them) and ``ffn_op`` (whether the FFN multiplies, shifts or adds: this project's extension; the
paper's FFNs were always ``mult``); per decoder layer also ``cross_heads`` (encoder-decoder attention heads) and
``enc_dec_span`` (HAT's arbitrary encoder-decoder attention: the decoder layer attends to the last
``attended_encoder_layers(span)`` encoder layers, concatenated along time).

The block details (:class:`BlockDetails`, :data:`BLOCK_DETAILS`) are the structural facts of the blocks that are
not genes; :meth:`SearchSpace.attention_qkv_dim`, :meth:`SearchSpace.fixed_kernel_heads` and
:meth:`SearchSpace.kernel_heads` are their one owner (the models build, and the cost model counts, with them).
This module needs no fairseq and no torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Tuple

from ..ops.kinds import BlockType, OpKind
from .serialise import Serialisable, fmt_values

__all__ = [
    "BlockDetails",
    "BLOCK_DETAILS",
    "BLOCK_DETAIL_OVERRIDES",
    "FIXED_FIELDS",
    "ORIGINAL_KERNEL_HEADS",
    "SIDES",
    "attended_encoder_layers",
    "LayerConfig",
    "SubnetConfig",
    "SearchSpace",
]

_SPAN_LAYERS = {-1: 1, 1: 2, 2: 3}
SIDES = ("encoder", "decoder")
"""The two sides of a model, in the order every gene table walks them."""


class BlockDetails(str, Enum):
    """Presets of the block details a space leaves at 0 (see :class:`SearchSpace`).

    ``ORIGINAL``: the released ShiftAddNAS code: the attention branch of ``attention+X`` has the full ``qkv_dim``;
    a lightweight kernel has 16 rows in a standalone ``lightweight_*`` block and 4 in ``attention+X``.
    ``COMPACT``: this project's earlier default (no BLEU evidence either way): the attention branch has
    ``qkv_dim / 2`` (it mixes ``d / 2`` channels, so head dims stay as in plain attention); kernel rows = the
    layer's sampled ``num_heads`` (so that the gene changes the lightweight-only layers too).
    """

    ORIGINAL = "original"
    COMPACT = "compact"


BLOCK_DETAIL_OVERRIDES = ("two_branch_qkv_dim", "lightweight_kernel_heads", "two_branch_kernel_heads")
"""The :class:`SearchSpace` fields that override one block detail of the preset (0: the preset's)."""
BLOCK_DETAILS = ("block_details",) + BLOCK_DETAIL_OVERRIDES
"""The :class:`SearchSpace` fields that are block details, not genes (the models' flags of the same names)."""
FIXED_FIELDS = ("name", "kernel_sizes", "qkv_dim") + BLOCK_DETAILS
"""The :class:`SearchSpace` fields that are not gene choices: fixed per space (a restriction cannot narrow them)."""
ORIGINAL_KERNEL_HEADS = {False: 16, True: 4}
"""Kernel rows of the ``original`` block details, by ``has_attention``: 16 standalone, 4 in ``attention+X``."""
_KERNEL_HEADS_FIELD = {False: "lightweight_kernel_heads", True: "two_branch_kernel_heads"}  # by has_attention


def attended_encoder_layers(span: int) -> int:
    """Number of last encoder layers an ``enc_dec_span`` attends to: -1 -> 1, 1 -> 2, 2 -> 3."""
    if span not in _SPAN_LAYERS:
        raise ValueError(f"enc_dec_span={span!r} not in allowed values {fmt_values(tuple(_SPAN_LAYERS))}")
    return _SPAN_LAYERS[span]


@dataclass(frozen=True)
class LayerConfig(Serialisable):
    """One encoder or decoder layer of a subnet.

    Args:
        block: token mixer of the layer.
        ffn_dim: hidden width of the FFN.
        num_heads: self-attention heads; also the kernel rows of the layer's lightweight conv, unless the
            space fixes them (:meth:`SearchSpace.kernel_heads`).
        ffn_op: how the FFN's two linears compute (``mult``, ``shift`` or ``add``).
        cross_heads: decoder only: encoder-decoder attention heads (``None`` in the encoder).
        enc_dec_span: decoder only: which encoder outputs the layer attends to, -1 = the last layer,
            1 = the last two, 2 = the last three (see :func:`attended_encoder_layers`); ``None`` in the encoder.
    """

    block: BlockType
    ffn_dim: int
    num_heads: int
    ffn_op: OpKind = OpKind.MULT
    cross_heads: Optional[int] = None
    enc_dec_span: Optional[int] = None


@dataclass(frozen=True)
class SubnetConfig(Serialisable):
    """One subnet: the embedding widths and one :class:`LayerConfig` per layer (depth = tuple length)."""

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder: Tuple[LayerConfig, ...]
    decoder: Tuple[LayerConfig, ...]


@dataclass(frozen=True)
class SearchSpace(Serialisable):
    """The allowed values of every gene. The space validates itself on construction.

    Args:
        name: the space's name (a key of :data:`SPACES` for the shipped ones).
        encoder_embed_dims, decoder_embed_dims: embedding widths (one per model side).
        encoder_ffn_dims, decoder_ffn_dims: FFN hidden widths (per layer).
        encoder_heads, decoder_self_heads, decoder_cross_heads: head counts (per layer).
        encoder_layers, decoder_layers: depths.
        enc_dec_spans: encoder-decoder spans (per decoder layer), a subset of ``(-1, 1, 2)``.
        encoder_blocks, decoder_blocks: token mixers (per layer); decoder ones must contain attention.
        ffn_ops: FFN operators (per layer); ``(OpKind.MULT,)`` reproduces the paper's space.
        kernel_sizes: lightweight-conv kernel size by layer index (encoder and decoder alike); odd, one per
            layer of the deepest side when the space has lightweight blocks, may be empty otherwise.
        qkv_dim: attention Q/K/V width, fixed: the head count only changes ``head_dim = qkv_dim / heads``.
        block_details: the preset of the three block details below that are left at 0: ``original`` (the
            default: the released ShiftAddNAS code's) or ``compact`` (this project's earlier default). See
            :class:`BlockDetails`.
        two_branch_qkv_dim: Q/K/V width of the attention branch of ``attention+X`` blocks; 0 = the preset's:
            ``qkv_dim`` (original) or ``qkv_dim / 2`` (compact). See :meth:`attention_qkv_dim`.
        lightweight_kernel_heads: kernel rows of a standalone ``lightweight_*`` block; 0 = the preset's: 16
            (original) or the layer's ``num_heads`` (compact). See :meth:`kernel_heads`.
        two_branch_kernel_heads: kernel rows of the lightweight branch of ``attention+X``; 0 = the preset's: 4
            (original) or the layer's ``num_heads`` (compact).

    The last four are block details, not genes (:data:`BLOCK_DETAILS`): they are fixed per space (the models'
    ``--block-details``, ``--two-branch-qkv-dim``, ``--lightweight-kernel-heads`` and ``--two-branch-kernel-heads``
    set them on the space a model is built over, which the model's checkpoint records).

    Rules checked (``ValueError`` naming the field): choices non-empty, without duplicates, positive; embed
    dims even and ``embed / 2`` divisible by every self-attention head count of that side (two-branch
    blocks split channels in halves, and the lightweight conv splits its channels into heads);
    ``qkv_dim`` divisible by every head count, and the Q/K/V width of two-branch blocks
    (:meth:`attention_qkv_dim`) by every self-attention head count of their side; a fixed kernel head count
    (:meth:`fixed_kernel_heads`) divides the width of its lightweight blocks
    (``embed`` standalone, ``embed / 2`` in two-branch blocks); every span attends to no more than the shallowest
    encoder; decoder blocks contain attention.
    """

    name: str
    encoder_embed_dims: Tuple[int, ...]
    decoder_embed_dims: Tuple[int, ...]
    encoder_ffn_dims: Tuple[int, ...]
    decoder_ffn_dims: Tuple[int, ...]
    encoder_heads: Tuple[int, ...]
    decoder_self_heads: Tuple[int, ...]
    decoder_cross_heads: Tuple[int, ...]
    encoder_layers: Tuple[int, ...]
    decoder_layers: Tuple[int, ...]
    enc_dec_spans: Tuple[int, ...]
    encoder_blocks: Tuple[BlockType, ...]
    decoder_blocks: Tuple[BlockType, ...]
    ffn_ops: Tuple[OpKind, ...]
    kernel_sizes: Tuple[int, ...]
    qkv_dim: int
    block_details: BlockDetails = BlockDetails.ORIGINAL
    two_branch_qkv_dim: int = 0
    lightweight_kernel_heads: int = 0
    two_branch_kernel_heads: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"SearchSpace {self.name!r}:"
        if not self.name:
            raise ValueError(f"{where} name must be non-empty")
        choice_fields = [f.name for f in dataclasses.fields(self) if f.name not in FIXED_FIELDS]
        for name in choice_fields:
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{where} {name} must be non-empty")
            if len(set(values)) != len(values):
                raise ValueError(f"{where} {name}={fmt_values(values)} has duplicates")
        for name in [n for n in choice_fields if n.endswith(("_dims", "_heads", "_layers"))] + ["kernel_sizes"]:
            if any(v <= 0 for v in getattr(self, name)):
                raise ValueError(f"{where} {name}={fmt_values(getattr(self, name))} must be positive")
        if self.qkv_dim <= 0:
            raise ValueError(f"{where} qkv_dim={self.qkv_dim} must be positive")
        for name in BLOCK_DETAIL_OVERRIDES:
            if getattr(self, name) < 0:
                raise ValueError(f"{where} {name}={getattr(self, name)} must be 0 (the default) or positive")
        for field_name in ("encoder_heads", "decoder_self_heads", "decoder_cross_heads"):
            for heads in getattr(self, field_name):
                if self.qkv_dim % heads:
                    raise ValueError(
                        f"{where} qkv_dim={self.qkv_dim} not divisible by {field_name} value {heads}"
                    )
        for side, heads_field in (("encoder", "encoder_heads"), ("decoder", "decoder_self_heads")):
            two_branch = [b for b in getattr(self, f"{side}_blocks") if b.is_two_branch]
            branch_qkv = self.attention_qkv_dim(two_branch[0]) if two_branch else self.qkv_dim
            for heads in getattr(self, heads_field):
                if branch_qkv % heads:
                    raise ValueError(
                        f"{where} the Q/K/V width {branch_qkv} of two-branch {side} blocks ("
                        + (f"two_branch_qkv_dim={self.two_branch_qkv_dim}" if self.two_branch_qkv_dim
                           else f"qkv_dim / 2 under block_details={self.block_details.value!r}")
                        + f") not divisible by {heads_field} value {heads}"
                    )
                for dim in getattr(self, f"{side}_embed_dims"):
                    if dim % 2 or (dim // 2) % heads:
                        raise ValueError(
                            f"{where} {side}_embed_dims value {dim} must be even with half divisible by "
                            f"{heads_field} value {heads}"
                        )
        for side in SIDES:
            for block in getattr(self, f"{side}_blocks"):
                fixed = self.fixed_kernel_heads(block)
                for dim in getattr(self, f"{side}_embed_dims") if block.lightweight_part and fixed else ():
                    if block.branch_width(dim) % fixed:
                        field_name = _KERNEL_HEADS_FIELD[block.has_attention]
                        given = f"{field_name}={fixed}" if getattr(self, field_name) else (
                            f"{field_name} {fixed} of block_details={self.block_details.value!r}")
                        raise ValueError(
                            f"{where} {given} does not divide the {block.branch_width(dim)} "
                            f"channels of {block.value!r} at {side}_embed_dims value {dim}"
                        )
        bad_blocks = [b for b in self.decoder_blocks if not b.has_attention]
        if bad_blocks:
            raise ValueError(f"{where} decoder_blocks must contain attention, got {fmt_values(bad_blocks)}")
        for span in self.enc_dec_spans:
            if span not in _SPAN_LAYERS:
                raise ValueError(
                    f"{where} enc_dec_spans value {span} not in allowed values {fmt_values(tuple(_SPAN_LAYERS))}"
                )
            if attended_encoder_layers(span) > min(self.encoder_layers):
                raise ValueError(
                    f"{where} enc_dec_spans value {span} attends to {attended_encoder_layers(span)} encoder "
                    f"layers, more than encoder_layers value {min(self.encoder_layers)}"
                )
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"{where} kernel_sizes={fmt_values(self.kernel_sizes)} must be odd")
        depth = max(self.max_encoder_layers, self.max_decoder_layers)
        lightweight = any(b.lightweight_part for b in self.encoder_blocks + self.decoder_blocks)
        if lightweight and len(self.kernel_sizes) < depth:
            raise ValueError(
                f"{where} kernel_sizes={fmt_values(self.kernel_sizes)} needs one size per layer ({depth}) "
                "for the lightweight blocks"
            )

    def attention_qkv_dim(self, block: BlockType) -> int:
        """Q/K/V width of ``block``'s attention: ``qkv_dim``; in ``attention+X`` ``two_branch_qkv_dim`` when set,
        else ``qkv_dim`` (``original`` block details) or ``qkv_dim / 2`` (``compact``)."""
        if not block.is_two_branch:
            return self.qkv_dim
        if self.two_branch_qkv_dim:
            return self.two_branch_qkv_dim
        return self.qkv_dim if self.block_details is BlockDetails.ORIGINAL else self.qkv_dim // 2

    def fixed_kernel_heads(self, block: BlockType) -> int:
        """Fixed rows of ``block``'s lightweight kernel, 0 when they follow the layer's heads: the set
        ``lightweight_kernel_heads`` / ``two_branch_kernel_heads``, else 16 / 4 (``original``) or 0 (``compact``)."""
        fixed = getattr(self, _KERNEL_HEADS_FIELD[block.has_attention])
        if fixed or self.block_details is BlockDetails.COMPACT:
            return fixed
        return ORIGINAL_KERNEL_HEADS[block.has_attention]

    def kernel_heads(self, block: BlockType, num_heads: int) -> int:
        """Rows of ``block``'s lightweight kernel in a layer of ``num_heads`` heads: :meth:`fixed_kernel_heads`,
        or ``num_heads`` when that is 0."""
        return self.fixed_kernel_heads(block) or num_heads

    @property
    def max_encoder_embed_dim(self) -> int:
        return max(self.encoder_embed_dims)

    @property
    def max_decoder_embed_dim(self) -> int:
        return max(self.decoder_embed_dims)

    @property
    def max_encoder_ffn_dim(self) -> int:
        return max(self.encoder_ffn_dims)

    @property
    def max_decoder_ffn_dim(self) -> int:
        return max(self.decoder_ffn_dims)

    @property
    def max_encoder_heads(self) -> int:
        return max(self.encoder_heads)

    @property
    def max_decoder_self_heads(self) -> int:
        return max(self.decoder_self_heads)

    @property
    def max_decoder_cross_heads(self) -> int:
        return max(self.decoder_cross_heads)

    @property
    def max_encoder_layers(self) -> int:
        return max(self.encoder_layers)

    @property
    def max_decoder_layers(self) -> int:
        return max(self.decoder_layers)

