"""The gene tables of a space and :func:`check`, whether a subnet's values are the space's.

Every function that walks genes (:mod:`.sampling`, :mod:`.features`) reads these tables, so a gene added here is
sampled, checked, mutated, crossed and encoded alike. This module needs no fairseq and no torch.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Sequence, Tuple

from .configs import SIDES, LayerConfig, SearchSpace, SubnetConfig
from .serialise import fmt_value, fmt_values

__all__ = ["model_genes", "depths", "layer_genes", "check_value", "check"]


def model_genes(space: SearchSpace) -> Dict[str, Tuple[int, ...]]:
    """Allowed values of each per-model :class:`SubnetConfig` field (the embed widths; depths: :func:`depths`)."""
    return {"encoder_embed_dim": space.encoder_embed_dims, "decoder_embed_dim": space.decoder_embed_dims}


def depths(space: SearchSpace, side: str) -> Tuple[int, ...]:
    """Allowed depths of ``side`` (``"encoder"`` or ``"decoder"``)."""
    return space.encoder_layers if side == "encoder" else space.decoder_layers


def layer_genes(space: SearchSpace, side: str) -> Dict[str, Tuple[Any, ...]]:
    """Allowed values of each :class:`LayerConfig` field of one side; fields left out must stay ``None``."""
    if side == "encoder":
        return {
            "block": space.encoder_blocks,
            "ffn_dim": space.encoder_ffn_dims,
            "num_heads": space.encoder_heads,
            "ffn_op": space.ffn_ops,
        }
    return {
        "block": space.decoder_blocks,
        "ffn_dim": space.decoder_ffn_dims,
        "num_heads": space.decoder_self_heads,
        "ffn_op": space.ffn_ops,
        "cross_heads": space.decoder_cross_heads,
        "enc_dec_span": space.enc_dec_spans,
    }


def check_value(path: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming ``path`` and ``allowed`` unless ``value`` is one of them (same type too)."""
    # type as well as value: a str equals its str-enum member but is not one
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise ValueError(f"{path}={fmt_value(value)} not in allowed values {fmt_values(allowed)}")


def check(space: SearchSpace, sub: SubnetConfig) -> None:
    """Raise ``ValueError`` unless every gene of ``sub`` is one of ``space``'s allowed values.

    The message names the field path and the allowed values, e.g.
    ``decoder[2].ffn_dim=5000 not in allowed values (3072, 2048, 1024)``.
    """
    if not isinstance(sub, SubnetConfig):
        raise ValueError(f"sub={sub!r} must be a SubnetConfig")
    for name, allowed in model_genes(space).items():
        check_value(name, getattr(sub, name), allowed)
    for side in SIDES:
        layers = getattr(sub, side)
        check_value(f"len({side})", len(layers), depths(space, side))
        genes = layer_genes(space, side)
        for i, layer in enumerate(layers):
            for f in dataclasses.fields(LayerConfig):
                value = getattr(layer, f.name)
                if f.name in genes:
                    check_value(f"{side}[{i}].{f.name}", value, genes[f.name])
                elif value is not None:
                    raise ValueError(f"{side}[{i}].{f.name}={fmt_value(value)} must be None in the {side}")
