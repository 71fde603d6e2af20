"""The cost metrics the search constrains and trades off, as stages cheapest first: the
:class:`~fairseq_shiftadd.cost.CostModel`'s analytical metrics, then ``predicted_latency_ms`` (with a latency
predictor), then ``measured_latency_ms`` (timed on this machine with HAT's protocol, when a constraint or
objective asks for it, under :meth:`~fairseq_shiftadd.latency.TimingProtocol.for_workload` of the costed sentence).
The search runs a stage only while the constraints on the earlier ones hold.

The search computes the metrics of each distinct subnet once (its candidate cache), so a subnet is timed at
most once. :func:`search_workload` is the costed sentence of the search's options (``--cost-*``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..cost import ACCOUNTINGS, METRICS, CostModel, HardwareProfile, Workload
from ..space import SearchSpace, SubnetConfig

__all__ = [
    "SEARCH_METRICS",
    "MEASURED",
    "COST_OPTIONS",
    "add_cost_args",
    "search_workload",
    "check_metric_sources",
    "cost_metrics",
]

MEASURED = "measured_latency_ms"
SEARCH_METRICS = (*METRICS, MEASURED)
"""Every metric a constraint or a Pareto objective may name."""

MetricsStage = Callable[[SubnetConfig], Dict[str, float]]

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


def check_metric_sources(needed: Sequence[str], latency_predictor: Union[None, str, Path]) -> None:
    """``ValueError`` for a metric not in :data:`SEARCH_METRICS`, or ``predicted_latency_ms`` without a predictor."""
    unknown = [m for m in needed if m not in SEARCH_METRICS]
    if unknown:
        raise ValueError(f"metric(s) {unknown} not in allowed values {SEARCH_METRICS}")
    if "predicted_latency_ms" in needed and latency_predictor is None:
        raise ValueError("predicted_latency_ms needs a latency predictor (--latency-predictor PATH)")


def cost_metrics(
    space: SearchSpace,
    needed: Sequence[str],
    profile: Union[str, Path, HardwareProfile] = "45nm",
    workload: Optional[Workload] = None,
    latency_predictor: Union[None, str, Path] = None,
    device: str = "cpu",
) -> List[MetricsStage]:
    """The metrics stages of the search, cheapest first (see the module docstring).

    Args:
        space: the search space.
        needed: the metrics that constraints and objectives name (each one of :data:`SEARCH_METRICS`).
        profile, workload: as :class:`~fairseq_shiftadd.cost.CostModel`.
        latency_predictor: path of a saved :class:`~fairseq_shiftadd.latency.LatencyPredictor` for
            ``space`` (``None``: no ``predicted_latency_ms``).
        device: where ``measured_latency_ms`` is timed, under ``TimingProtocol.for_workload(workload, device)``
            (:class:`~fairseq_shiftadd.latency.TimingProtocol`: the workload's lengths and beam, the protocol's
            default warm-ups, runs and clock).

    Returns:
        The stages; the measured latency, if needed, is the last one (it is not deterministic: under several
        ranks wrap it with :func:`~.distributed.from_rank0`).

    Raises:
        ValueError: see :func:`check_metric_sources`; an invalid profile, workload, predictor or device.
    """
    check_metric_sources(needed, latency_predictor)
    workload = Workload() if workload is None else workload
    stages: List[MetricsStage] = [CostModel(space, profile=profile, workload=workload).metrics]
    if latency_predictor is not None:
        from ..latency.predictor import LatencyPredictor  # torch: imported only when asked for

        predictor = LatencyPredictor.load(latency_predictor, space=space)
        stages.append(lambda sub: {"predicted_latency_ms": float(predictor.predict([sub])[0])})
    if MEASURED in needed:
        from ..latency.protocol import TimingProtocol  # torch: imported only when asked for

        protocol = TimingProtocol.for_workload(workload, device)

        def measured(sub: SubnetConfig) -> Dict[str, float]:
            from ..latency.measure import measure_latency  # builds fairseq models: imported only when asked for

            return {MEASURED: measure_latency(space, sub, protocol, workload.vocab_size).total_ms}

        stages.append(measured)
    return stages
