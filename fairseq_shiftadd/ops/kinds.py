"""The operator vocabulary of ShiftAddNAS (arXiv 2205.08119), as string enums.

The enum values are the method's own names, so they are what configs, JSON files and
command lines spell.
"""
from enum import Enum

__all__ = ["OpKind", "BlockType"]


class OpKind(str, Enum):
    """How a layer combines its inputs with its weights (and how an operation is costed).

    ``MULT``: multiply-accumulate; ``SHIFT``: weights are signed powers of two, so a product is a
    bit shift; ``ADD``: negative L1 distance (AdderNet), only additions and subtractions.
    """

    MULT = "mult"
    SHIFT = "shift"
    ADD = "add"


class BlockType(str, Enum):
    """Token mixers of the NLP search space (method section 2): 7 encoder, 4 decoder types."""

    LIGHTWEIGHT_CONV = "lightweight_conv"
    LIGHTWEIGHT_ADD = "lightweight_add"
    LIGHTWEIGHT_SHIFTADD = "lightweight_shiftadd"
    ATTENTION = "attention"
    ATTENTION_LIGHTWEIGHT_CONV = "attention+lightweight_conv"
    ATTENTION_LIGHTWEIGHT_ADD = "attention+lightweight_add"
    ATTENTION_LIGHTWEIGHT_SHIFTADD = "attention+lightweight_shiftadd"

    @property
    def has_attention(self) -> bool:
        return self.value.startswith("attention")

    @property
    def lightweight_part(self) -> "BlockType | None":
        """The lightweight mixer of this block (the second branch of a two-branch block)."""
        name = self.value.split("+")[-1]
        return None if name == "attention" else BlockType(name)
