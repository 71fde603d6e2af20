"""The cost metrics the search constrains and trades off: :class:`~fairseq_shiftadd.cost.CostModel` metrics,
plus ``measured_latency_ms`` (timed on this machine with HAT's protocol) when a constraint or objective asks for it.

The search computes the metrics of each distinct subnet once (its candidate cache), so a subnet is timed at
most once. :func:`search_workload` is the costed sentence of the search's options (``--cost-*``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

from ..cost import ACCOUNTINGS, METRICS, CostModel, Workload
from ..space import SearchSpace, SubnetConfig

__all__ = ["SEARCH_METRICS", "COST_OPTIONS", "add_cost_args", "search_workload", "cost_metrics"]

MEASURED = "measured_latency_ms"
SEARCH_METRICS = (*METRICS, MEASURED)
"""Every metric a constraint or a Pareto objective may name."""

COST_OPTIONS = ("hardware_profile", "latency_predictor", "cost_accounting", "cost_src_len", "cost_tgt_len",
                "cost_beam", "cost_bits")
"""The argparse destinations of the options that change a cost metric (for a resume fingerprint)."""


def add_cost_args(group: Any) -> None:
    """The search's cost-model options (destinations :data:`COST_OPTIONS`) on an argparse group."""
    defaults = Workload()
    group.add_argument("--hardware-profile", default="45nm",
                       help="cost-model profile: shipped name or YAML path (default: %(default)s)")
    group.add_argument("--latency-predictor", default=None, help="saved latency predictor (predicted_latency_ms)")
    group.add_argument("--cost-accounting", choices=ACCOUNTINGS, default=defaults.accounting,
                       help="how a sentence's energy is charged: streaming (step-by-step decoding with the beam, "
                            "weights streamed at every step, embedding and output projection) or original (the "
                            "paper's one teacher-forced pass, weights once per sentence, no vocabulary) "
                            "(default: %(default)s)")
    group.add_argument("--cost-src-len", type=int, default=defaults.src_len,
                       help="source tokens of the costed sentence (default: %(default)s)")
    group.add_argument("--cost-tgt-len", type=int, default=defaults.tgt_len,
                       help="target tokens of the costed sentence (default: %(default)s)")
    group.add_argument("--cost-beam", type=int, default=None,
                       help="beam of the costed sentence (default: --beam, the beam the recipes decode with, "
                            "under the streaming accounting; 1 under the original, which allows no other)")
    group.add_argument("--cost-bits", type=int, default=None,
                       help="arithmetic width of the costed sentence (default: the supernet's --quant-bits, "
                            "32 for a float supernet)")


def search_workload(args: argparse.Namespace, vocab_size: int = Workload.vocab_size,
                    quant_bits: Optional[int] = None) -> Workload:
    """The costed sentence of the search's options (:func:`add_cost_args`).

    Args:
        args: parsed options (``cost_*`` and fairseq's ``beam``).
        vocab_size: the target dictionary's size (the data's, not a default).
        quant_bits: the supernet's ``quant_bits`` (``None``: a float model, costed at 32 bits).

    Raises:
        ValueError: an invalid workload (e.g. ``--cost-beam 4`` with ``--cost-accounting original``).
    """
    original = args.cost_accounting == "original"
    beam = args.cost_beam if args.cost_beam is not None else (1 if original else args.beam)
    bits = args.cost_bits if args.cost_bits is not None else (quant_bits or 32)
    try:
        return Workload(src_len=args.cost_src_len, tgt_len=args.cost_tgt_len, beam=beam, bits=bits,
                        vocab_size=vocab_size, accounting=args.cost_accounting)
    except ValueError as err:
        raise ValueError(f"--cost-* options: {err}") from None


def cost_metrics(
    space: SearchSpace,
    needed: Sequence[str],
    profile: Union[str, Path] = "45nm",
    workload: Optional[Workload] = None,
    latency_predictor: Union[None, str, Path] = None,
    device: str = "cpu",
) -> Callable[[SubnetConfig], Dict[str, float]]:
    """The metrics function of the search.

    Args:
        space: the search space.
        needed: the metrics that constraints and objectives name (each one of :data:`SEARCH_METRICS`).
        profile, workload, latency_predictor: as :class:`~fairseq_shiftadd.cost.CostModel`.
        device: where ``measured_latency_ms`` is timed (the workload's lengths and beam, 5 warm-ups, 20 runs).

    Raises:
        ValueError: an unknown metric, or ``predicted_latency_ms`` without a latency predictor.
    """
    unknown = [m for m in needed if m not in SEARCH_METRICS]
    if unknown:
        raise ValueError(f"metric(s) {unknown} not in allowed values {SEARCH_METRICS}")
    if "predicted_latency_ms" in needed and latency_predictor is None:
        raise ValueError("predicted_latency_ms needs a latency predictor (--latency-predictor PATH)")
    workload = Workload() if workload is None else workload
    model = CostModel(space, profile=profile, workload=workload, latency_predictor=latency_predictor)
    measure = MEASURED in needed

    def metrics(sub: SubnetConfig) -> Dict[str, float]:
        out = model.metrics(sub)
        if measure:
            from ..cost.measure import measure_latency  # builds fairseq models: imported only when asked for

            out[MEASURED] = measure_latency(
                space, sub, device=device, src_len=workload.src_len, tgt_len=workload.tgt_len,
                beam=workload.beam, vocab_size=workload.vocab_size,
            ).total_ms
        return out

    return metrics
