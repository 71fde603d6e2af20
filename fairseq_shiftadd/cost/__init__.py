"""Hardware cost model of ShiftAddNAS subnets (arXiv 2205.08119, method.md section 5); no fairseq needed.

    from fairseq_shiftadd.cost import CostModel, Workload
    cm = CostModel(space, profile="45nm", workload=Workload(src_len=30, tgt_len=30, beam=1, bits=32))
    cm.metrics(sub)   # {"energy_mj", "analytical_latency_ms", "params", "mults", "adds", "shifts"}
    cm.report(sub)    # per layer / part breakdown; .table(), .to_dict()

Modules: :mod:`.workload` (what one inference is), :mod:`.counts` (what each part computes and moves),
:mod:`.profile` (YAML hardware profiles), :mod:`.energy`, :mod:`.analytical` (latency on the profile's PE
array), :mod:`.model` (:class:`CostModel`, caching), :mod:`.cli` (``fairseq-shiftadd-cost``). Measured latency
and the latency predictor are :mod:`.measure` and :mod:`.predictor` (torch; imported on demand).
"""
from .counts import LEVELS, Part
from .model import METRICS, CostModel, CostReport, PartCost
from .profile import AcceleratorProfile, HardwareProfile, load_profile, shipped_profiles
from .workload import BIT_WIDTHS, Workload

__all__ = [
    "Workload",
    "BIT_WIDTHS",
    "CostModel",
    "CostReport",
    "PartCost",
    "Part",
    "LEVELS",
    "METRICS",
    "HardwareProfile",
    "AcceleratorProfile",
    "load_profile",
    "shipped_profiles",
]
