"""The cost metrics the search constrains and trades off, as stages cheapest first: the
:class:`~fairseq_shiftadd.cost.CostModel`'s analytical metrics, then ``predicted_latency_ms`` (with a latency
predictor), then ``measured_latency_ms`` (timed on this machine with HAT's protocol, when a constraint or
objective asks for it). The search runs a stage only while the constraints on the earlier ones hold.

The search computes the metrics of each distinct subnet once (its candidate cache), so a subnet is timed at
most once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from ..cost import METRICS, CostModel, HardwareProfile, Workload
from ..space import SearchSpace, SubnetConfig

__all__ = ["SEARCH_METRICS", "MEASURED", "check_metric_sources", "cost_metrics"]

MEASURED = "measured_latency_ms"
SEARCH_METRICS = (*METRICS, MEASURED)
"""Every metric a constraint or a Pareto objective may name."""

MetricsStage = Callable[[SubnetConfig], Dict[str, float]]


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
        latency_predictor: path of a saved :class:`~fairseq_shiftadd.cost.predictor.LatencyPredictor` for
            ``space`` (``None``: no ``predicted_latency_ms``).
        device: where ``measured_latency_ms`` is timed (the workload's lengths and beam, 5 warm-ups, 20 runs).

    Returns:
        The stages; the measured latency, if needed, is the last one (it is not deterministic: under several
        ranks wrap it with :func:`~.distributed.from_rank0`).

    Raises:
        ValueError: see :func:`check_metric_sources`; an invalid profile, workload or predictor.
    """
    check_metric_sources(needed, latency_predictor)
    workload = Workload() if workload is None else workload
    stages: List[MetricsStage] = [CostModel(space, profile=profile, workload=workload).metrics]
    if latency_predictor is not None:
        from ..cost.predictor import LatencyPredictor  # torch: imported only when asked for

        predictor = LatencyPredictor.load(latency_predictor, space=space)
        stages.append(lambda sub: {"predicted_latency_ms": float(predictor.predict([sub])[0])})
    if MEASURED in needed:

        def measured(sub: SubnetConfig) -> Dict[str, float]:
            from ..cost.measure import measure_latency  # builds fairseq models: imported only when asked for

            return {MEASURED: measure_latency(
                space, sub, device=device, src_len=workload.src_len, tgt_len=workload.tgt_len,
                beam=workload.beam, vocab_size=workload.vocab_size,
            ).total_ms}

        stages.append(measured)
    return stages
