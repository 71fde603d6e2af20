"""Hardware cost model of ShiftAddNAS subnets (arXiv 2205.08119, docs/method.md section 5); no fairseq needed.

    from fairseq_shiftadd.cost import CostModel, Workload
    cm = CostModel(space, profile="45nm", workload=Workload(src_len=30, tgt_len=30, beam=1, bits=32,
                                                          accounting="streaming"))   # or "original"
    cm.metrics(sub)   # {"energy_mj", "analytical_latency_ms", "params", "mults", "adds", "shifts"}
    cm.report(sub)    # per layer / part breakdown, fixed energy; .table(), .to_dict()

Modules: :mod:`.workload` (what one inference is, and the two accountings), :mod:`.parts` (what each part computes and
moves), :mod:`.profile` (YAML hardware profiles), :mod:`.energy`, :mod:`.analytical` (latency on the profile's PE
array), :mod:`.model` (:class:`CostModel`, caching, fixed energy), :mod:`.anchors` (the paper's Transformer energies as
subnets), :mod:`.cli` (``fairseq-shiftadd-cost``). All of it is arithmetic; measured latency and the latency predictor
are the package :mod:`fairseq_shiftadd.latency`.
"""
from .parts import LEVELS, Part
from .model import METRICS, CostModel, CostReport, PartCost
from .profile import AcceleratorProfile, HardwareProfile, load_profile, shipped_profiles
from .workload import ACCOUNTINGS, BIT_WIDTHS, Workload, read_workload_header, workload_header

__all__ = [
    "Workload",
    "ACCOUNTINGS",
    "BIT_WIDTHS",
    "workload_header",
    "read_workload_header",
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
