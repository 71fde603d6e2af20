"""The cost metrics the search constrains and trades off: :class:`~fairseq_shiftadd.cost.CostModel` metrics,
plus ``measured_latency_ms`` (timed on this machine with HAT's protocol) when a constraint or objective asks for it.

The search computes the metrics of each distinct subnet once (its candidate cache), so a subnet is timed at
most once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Union

from ..cost import METRICS, CostModel, Workload
from ..space import SearchSpace, SubnetConfig

__all__ = ["SEARCH_METRICS", "cost_metrics"]

MEASURED = "measured_latency_ms"
SEARCH_METRICS = (*METRICS, MEASURED)
"""Every metric a constraint or a Pareto objective may name."""


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
