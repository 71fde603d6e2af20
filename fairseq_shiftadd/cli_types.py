"""``argparse`` types of every console script: a flag's text to a checked value, or one clear error line.

A bad value stops the parser with ``PROG: error: argument --beam: must be a positive integer, got 0`` (argparse
names the flag; the allowed values are worded as the value checks of :mod:`fairseq_shiftadd.ops.validate`, the one
owner of those rules, say them). Usage::

    parser.add_argument("--beam", type=positive_int, default=5)
    parser.add_argument("--vocab-size", type=int_at_least(100), default=8000)
"""
from __future__ import annotations

import argparse
from typing import Callable

from .ops.validate import int_range_text

__all__ = ["int_at_least", "positive_int", "non_negative_int"]


def int_at_least(minimum: int) -> Callable[[str], int]:
    """The ``argparse`` type of an integer flag ``>= minimum``.

    The returned parser raises ``argparse.ArgumentTypeError`` (``must be a positive integer, got 0``), which
    argparse reports as one line naming the flag.
    """
    allowed = int_range_text(minimum)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


positive_int = int_at_least(1)
"""An integer flag ``>= 1`` (counts, sizes, beams, threads)."""

non_negative_int = int_at_least(0)
"""An integer flag ``>= 0`` (warm-up runs, augmentation shifts)."""
