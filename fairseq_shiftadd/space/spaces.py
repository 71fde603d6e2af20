"""The shipped NLP search spaces by name (:data:`SPACES`) and :func:`get_space`.

The shipped spaces leave the block details at the ``original`` preset (:class:`~.configs.BlockDetails`); a model
records the space it was built from in its checkpoint, so a later edit here does not change a trained model.
This module needs no fairseq and no torch.
"""
from __future__ import annotations

import dataclasses
from typing import Dict

from ..cli_errors import InputError
from ..ops.kinds import BlockType, OpKind
from .configs import SearchSpace
from .serialise import fmt_values

__all__ = ["SPACES", "get_space"]


_WMT14_EN_DE = SearchSpace(
    name="wmt14_en_de",
    encoder_embed_dims=(1024, 768, 512),
    decoder_embed_dims=(1024, 768, 512),
    encoder_ffn_dims=(4096, 3072, 2048, 1024),
    decoder_ffn_dims=(4096, 3072, 2048, 1024),
    encoder_heads=(16, 8, 4),
    decoder_self_heads=(16, 8, 4),
    decoder_cross_heads=(16, 8, 4),
    encoder_layers=(6,),
    decoder_layers=(1, 2, 3, 4, 5, 6),
    enc_dec_spans=(-1, 1, 2),
    encoder_blocks=tuple(BlockType),
    decoder_blocks=tuple(b for b in BlockType if b.has_attention),
    ffn_ops=(OpKind.MULT, OpKind.SHIFT, OpKind.ADD),
    kernel_sizes=(3, 7, 15, 31, 31, 31),
    qkv_dim=512,
)

SPACES: Dict[str, SearchSpace] = {
    space.name: space
    for space in (
        _WMT14_EN_DE,
        dataclasses.replace(_WMT14_EN_DE, name="wmt14_en_fr", decoder_ffn_dims=(3072, 2048, 1024)),
        SearchSpace(  # HAT (arXiv 2005.14187): attention only, multiplicative FFNs
            name="hat_wmt14",
            encoder_embed_dims=(640, 512),
            decoder_embed_dims=(640, 512),
            encoder_ffn_dims=(3072, 2048, 1024),
            decoder_ffn_dims=(3072, 2048, 1024),
            encoder_heads=(8, 4),
            decoder_self_heads=(8, 4),
            decoder_cross_heads=(8, 4),
            encoder_layers=(6,),
            decoder_layers=(1, 2, 3, 4, 5, 6),
            enc_dec_spans=(-1, 1, 2),
            encoder_blocks=(BlockType.ATTENTION,),
            decoder_blocks=(BlockType.ATTENTION,),
            ffn_ops=(OpKind.MULT,),
            kernel_sizes=(),
            qkv_dim=512,
        ),
        SearchSpace(  # HAT's IWSLT14 De-En widths (arXiv 2005.14187) with every block type and FFN operator
            name="iwslt14_de_en",
            encoder_embed_dims=(640, 512),
            decoder_embed_dims=(640, 512),
            encoder_ffn_dims=(2048, 1024, 512),
            decoder_ffn_dims=(2048, 1024, 512),
            encoder_heads=(4, 2),
            decoder_self_heads=(4, 2),
            decoder_cross_heads=(4, 2),
            encoder_layers=(6,),
            decoder_layers=(1, 2, 3, 4, 5, 6),
            enc_dec_spans=(-1, 1, 2),
            encoder_blocks=tuple(BlockType),
            decoder_blocks=tuple(b for b in BlockType if b.has_attention),
            ffn_ops=(OpKind.MULT, OpKind.SHIFT, OpKind.ADD),
            kernel_sizes=(3, 7, 15, 31, 31, 31),
            qkv_dim=512,
        ),
        SearchSpace(  # the CPU demo (scripts/demo.sh): every operator, two widths and depths; largest = the baseline
            name="demo",
            encoder_embed_dims=(128, 64),
            decoder_embed_dims=(128, 64),
            encoder_ffn_dims=(512, 256),
            decoder_ffn_dims=(512, 256),
            encoder_heads=(4,),
            decoder_self_heads=(4,),
            decoder_cross_heads=(4,),
            encoder_layers=(2, 1),
            decoder_layers=(2, 1),
            enc_dec_spans=(-1,),
            encoder_blocks=tuple(b for b in BlockType if b.has_attention),
            decoder_blocks=tuple(b for b in BlockType if b.has_attention),
            ffn_ops=(OpKind.MULT, OpKind.SHIFT, OpKind.ADD),
            kernel_sizes=(3, 7),
            qkv_dim=128,
        ),
        SearchSpace(  # every block type and FFN operator at sizes a 2-core CPU trains in minutes
            name="tiny",
            encoder_embed_dims=(128, 64),
            decoder_embed_dims=(128, 64),
            encoder_ffn_dims=(512, 256),
            decoder_ffn_dims=(512, 256),
            encoder_heads=(4, 2),
            decoder_self_heads=(4, 2),
            decoder_cross_heads=(4, 2),
            encoder_layers=(2,),
            decoder_layers=(1, 2),
            enc_dec_spans=(-1, 1),
            encoder_blocks=tuple(BlockType),
            decoder_blocks=tuple(b for b in BlockType if b.has_attention),
            ffn_ops=(OpKind.MULT, OpKind.SHIFT, OpKind.ADD),
            kernel_sizes=(3, 7),
            qkv_dim=128,
        ),
    )
}
"""The shipped spaces by name: ``wmt14_en_de`` and ``wmt14_en_fr`` (the paper's, plus FFN operators),
``hat_wmt14`` (HAT's), ``iwslt14_de_en`` (HAT's IWSLT widths with this project's operators), ``demo`` (the
CPU demo's: every operator per layer, i.e. the token mixers attention and attention + lightweight conv, add or
shift-add, and mult, shift or add FFNs; embed 128 or 64, FFN 512 or 256, 1 or 2 layers per side, so that energy
spans 2.7x under the streaming accounting at beam 5 and 9x under the original; its largest subnet is the demo's
Transformer baseline) and ``tiny`` (for CPU tests)."""


def get_space(name: str) -> SearchSpace:
    """The shipped space called ``name``; :class:`InputError` (a ``ValueError``) listing the names otherwise."""
    if name not in SPACES:
        raise InputError(f"space name={name!r} not in allowed values {fmt_values(tuple(SPACES))}")
    return SPACES[name]
