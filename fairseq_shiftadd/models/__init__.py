"""fairseq models of ShiftAddNAS (arXiv 2205.08119): the weight-sharing supernet and standalone subnets.

Registered in :mod:`fairseq_shiftadd.registry`: ``shiftadd_supernet`` (:class:`ShiftAddSupernet`) with its
named archs (:mod:`.archs`) and ``shiftadd_transformer`` (:class:`ShiftAddTransformer`).
"""
from .subnet import ShiftAddTransformer, SubnetModelConfig, extract_subnet_state
from .supernet import ShiftAddSupernet, SupernetConfig

__all__ = ["ShiftAddSupernet", "SupernetConfig", "ShiftAddTransformer", "SubnetModelConfig", "extract_subnet_state"]
