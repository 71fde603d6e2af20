"""The operator vocabulary of ShiftAddNAS (arXiv 2205.08119), as string enums.

The enum values are the method's own names, so they are what configs, JSON files and
command lines spell.
"""
from enum import Enum
from typing import Optional, Sequence

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
    """Token mixers of the NLP search space (docs/method.md section 2): 7 encoder, 4 decoder types.

    The structural rules of a block type live here, read alike by the models (``models/mixer.py``,
    ``models/lightweight.py``, ``models/layers.py``) and the cost model (``cost/``): which branches it has
    (:attr:`has_attention`, :attr:`lightweight_part`, :attr:`is_two_branch`), how wide each branch is
    (:meth:`branch_width`), what its lightweight branch computes (:attr:`has_shift`, :attr:`mixer_op`) and its
    kernel size in a layer (:meth:`kernel_size`). The space-dependent details (the attention's Q/K/V width,
    the kernel rows) are methods of :class:`~fairseq_shiftadd.space.SearchSpace`.
    """

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

    @property
    def is_two_branch(self) -> bool:
        """``attention+X`` (Lite Transformer): attention on the first half of the channels, ``X`` on the second."""
        return self.has_attention and self.lightweight_part is not None

    def branch_width(self, dim: int) -> int:
        """Channels each branch mixes at model width ``dim``: ``dim / 2`` in a two-branch block, else ``dim``."""
        return dim // 2 if self.is_two_branch else dim

    @property
    def has_shift(self) -> bool:
        """Whether the lightweight branch has a shift linear before its mixer (``*lightweight_shiftadd``)."""
        return self.lightweight_part is BlockType.LIGHTWEIGHT_SHIFTADD

    @property
    def mixer_op(self) -> Optional[OpKind]:
        """The lightweight mixer's primitive: ``MULT`` (lightweight conv), ``ADD`` (the adder mixers of
        ``*lightweight_add`` and ``*lightweight_shiftadd``); ``None`` without a lightweight branch."""
        part = self.lightweight_part
        if part is None:
            return None
        return OpKind.MULT if part is BlockType.LIGHTWEIGHT_CONV else OpKind.ADD

    def kernel_size(self, kernel_sizes: Sequence[int], layer: int) -> Optional[int]:
        """Taps of this block's lightweight kernel in layer ``layer`` of a space with ``kernel_sizes`` (one per
        layer index, encoder and decoder alike); ``None`` without a lightweight branch.

        Raises:
            ValueError: the block has a lightweight branch and ``kernel_sizes`` has no size for ``layer``.
        """
        if self.lightweight_part is None:
            return None
        if not 0 <= layer < len(kernel_sizes):
            raise ValueError(
                f"kernel_sizes={tuple(kernel_sizes)} has no kernel size for layer {layer} (block {self.value!r})"
            )
        return kernel_sizes[layer]
