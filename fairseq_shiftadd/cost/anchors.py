"""The paper's energy anchors (ShiftAddNAS, arXiv 2205.08119; docs/method.md section 7) as subnets of ``wmt14_en_de``.

The original simulated Transformer-base and Transformer-big with a Q/K/V width of 512 (docs/method.md section 5),
which makes both of them subnets of the ``wmt14_en_de`` space: all-attention layers with multiplicative FFNs,
6 + 6 layers; big is the space's largest all-attention subnet. Their reported energies (45 nm, 32 bits, one
30-token sentence) are reproduced by the ``original`` accounting (:mod:`.workload`).
"""
from __future__ import annotations

from typing import Dict, Tuple

from ..ops.kinds import BlockType, OpKind
from ..space import LayerConfig, SubnetConfig

__all__ = ["ANCHOR_SPACE", "ANCHOR_SHAPES", "REPORTED_ENERGY_MJ", "anchor_subnet"]

ANCHOR_SPACE = "wmt14_en_de"
"""The space both anchors belong to (its Q/K/V width is 512)."""

ANCHOR_SHAPES: Dict[str, Tuple[int, int, int]] = {
    "Transformer-base": (512, 2048, 8),
    "Transformer-big": (1024, 4096, 16),
}
"""Model -> (embedding width, FFN width, heads)."""

REPORTED_ENERGY_MJ: Dict[str, float] = {"Transformer-base": 69.41, "Transformer-big": 214.34}
"""The paper's energies per sentence (mJ, 45 nm, 32 bits; docs/method.md section 7)."""


def anchor_subnet(name: str, layers: int = 6) -> SubnetConfig:
    """The ``wmt14_en_de`` subnet of ``name`` (a key of :data:`ANCHOR_SHAPES`): attention, mult FFN, span -1.

    Raises:
        ValueError: an unknown name.
    """
    if name not in ANCHOR_SHAPES:
        raise ValueError(f"anchor {name!r} not in allowed values {tuple(ANCHOR_SHAPES)}")
    embed, ffn, heads = ANCHOR_SHAPES[name]
    encoder = (LayerConfig(BlockType.ATTENTION, ffn, heads, OpKind.MULT),) * layers
    decoder = (LayerConfig(BlockType.ATTENTION, ffn, heads, OpKind.MULT, cross_heads=heads, enc_dec_span=-1),) * layers
    return SubnetConfig(embed, embed, encoder, decoder)
