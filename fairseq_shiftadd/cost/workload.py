"""What one costed inference is: accounting, source and target lengths, beam, arithmetic width, vocabulary.

HAT's latency protocol and ShiftAddNAS's energy simulation (arXiv 2205.08119) cost one sentence with a
30-token source. How the decoder and the weights are charged is the *accounting* (:data:`ACCOUNTINGS`):

* ``streaming`` (this project's default): the decoder runs ``tgt_len`` incremental steps on ``beam``
  hypotheses, as fairseq's generator decodes; every decoder weight is streamed from DRAM at every step; the
  embedding lookups and the output (vocabulary) projection are charged.
* ``original`` (the paper's simulator, docs/method.md section 5): the decoder is one teacher-forced pass over
  ``tgt_len`` tokens (beam 1, masked self-attention); every weight is fetched from DRAM once per sentence; no
  embedding and no output projection; cross-attention keys and values are computed once. Operators are still
  costed as they compute (none of the original simulator's shortcuts: see :mod:`.parts`).

Deliberate deviation from the method: ``streaming`` is the default because it is what a deployed model pays
when ``fairseq-generate`` decodes it step by step (weights of an Eyeriss-class accelerator do not stay on chip
across steps); the paper's numbers are reproduced with ``accounting="original"`` (``benchmarks/energy_anchors.py``).

:class:`Workload` holds those settings; the cost model keys its caches on it, so it is a frozen (hashable)
dataclass. :func:`workload_header` / :func:`read_workload_header` record a workload and a profile in the
comment header of a subnet file (the search's ``best.yaml``), so the cost CLI reproduces its numbers (the header's
line format, and the record of the space the subnet was searched in, are :mod:`fairseq_shiftadd.space.subnet_file`'s).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from ..ops.kinds import OpKind
from ..ops.validate import positive_int
from ..space.subnet_file import header_line, read_header

__all__ = ["ACCOUNTINGS", "BIT_WIDTHS", "Workload", "workload_header", "read_workload_header"]

BIT_WIDTHS = (32, 16, 8, 4)
"""Operand widths a workload or a hardware profile may use."""

ACCOUNTINGS = ("streaming", "original")
"""How a sentence is charged (see the module docstring); the first is the default."""


@dataclass(frozen=True)
class Workload:
    """One sentence through an encoder-decoder, batch 1.

    Args:
        src_len: source tokens, encoded in one pass.
        tgt_len: decoding steps (one new token per beam hypothesis per step, with incremental state).
        beam: hypotheses decoded in parallel (the decoder's batch; the encoder runs once).
        bits: width of every activation, weight and arithmetic operation (32: float, 8: the paper's 8-bit
            models); re-tags all counted operations, and must be a width of the hardware profile used.
        vocab_size: target vocabulary (the output projection computes one logit per word at every step).
        shift_weight_bits: stored width of a shift weight (sign and exponent: DeepShift's 5 bits); shift
            layers stream their weights at this width, every other layer at ``bits``.
        accounting: ``"streaming"`` or ``"original"`` (:data:`ACCOUNTINGS`, the module docstring);
            ``"original"`` decodes one teacher-forced hypothesis, so it needs ``beam=1``, and does not use
            ``vocab_size`` (no embedding or output projection energy; the embedding still counts in ``params``).

    Raises:
        ValueError: a non-positive length, beam, width or vocabulary, an unknown ``bits`` or ``accounting``,
            or ``beam > 1`` with the original accounting.
    """

    src_len: int = 30
    tgt_len: int = 30
    beam: int = 1
    bits: int = 32
    vocab_size: int = 32000
    shift_weight_bits: int = 5
    accounting: str = ACCOUNTINGS[0]

    def __post_init__(self) -> None:
        for name in ("src_len", "tgt_len", "beam", "bits", "vocab_size", "shift_weight_bits"):
            positive_int(f"Workload.{name}", getattr(self, name))
        if self.bits not in BIT_WIDTHS:
            raise ValueError(f"Workload.bits={self.bits} not in allowed values {BIT_WIDTHS}")
        if not 2 <= self.shift_weight_bits <= self.bits:
            raise ValueError(
                f"Workload.shift_weight_bits={self.shift_weight_bits} must be in [2, bits={self.bits}]"
            )
        if self.accounting not in ACCOUNTINGS:
            raise ValueError(f"Workload.accounting={self.accounting!r} not in allowed values {ACCOUNTINGS}")
        if self.accounting == "original" and self.beam != 1:
            raise ValueError(
                f"Workload.beam={self.beam}: the original accounting is one teacher-forced pass (beam 1)"
            )

    @property
    def incremental(self) -> bool:
        """Streaming: the decoder runs step by step with the beam, weights re-streamed at every step."""
        return self.accounting == "streaming"

    @property
    def charges_vocabulary(self) -> bool:
        """Streaming: embedding lookups and the output projection are charged (the original leaves them out)."""
        return self.accounting == "streaming"

    def describe(self) -> str:
        """One line naming every setting, for the head of a table."""
        decoding = (f"{self.tgt_len} decoding steps, beam {self.beam}" if self.incremental
                    else f"{self.tgt_len} target tokens in one teacher-forced pass")
        vocab = f", vocab {self.vocab_size}" if self.charges_vocabulary else ""
        return f"{self.accounting} accounting, {self.bits}-bit, src {self.src_len} tokens, {decoding}{vocab}"

    def weight_bits(self, kind: OpKind) -> int:
        """Stored width of a weight that ``kind`` computes with."""
        return self.shift_weight_bits if kind is OpKind.SHIFT else self.bits


WORKLOAD_KEY = "cost_workload"
"""Key of the workload line in a subnet file's header (the line format: :mod:`fairseq_shiftadd.space.subnet_file`)."""


def workload_header(workload: Workload, profile: Union[str, Path]) -> str:
    """The ``# cost_workload: {...}`` line recording ``workload`` and ``profile`` (:func:`read_workload_header`)."""
    return header_line(WORKLOAD_KEY, {**asdict(workload), "profile": str(profile)})


def _workload_and_profile(record: Dict[str, Any]) -> Tuple[Workload, str]:
    profile = record.pop("profile")
    return Workload(**record), str(profile)


def read_workload_header(path: Union[str, Path]) -> Optional[Tuple[Workload, str]]:
    """The ``(workload, profile)`` recorded in the comment header of the subnet file ``path``, or ``None``.

    Raises:
        ValueError: a header line that is not a valid record (naming the file).
    """
    return read_header(path, WORKLOAD_KEY, _workload_and_profile)
