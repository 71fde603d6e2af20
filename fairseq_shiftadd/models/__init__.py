"""fairseq models of ShiftAddNAS (arXiv 2205.08119): the weight-sharing supernet and standalone subnets.

Registered in :mod:`fairseq_shiftadd.registry`: ``shiftadd_supernet`` (:class:`ShiftAddSupernet`) with its
named archs (:mod:`.archs`) and ``shiftadd_transformer`` (:class:`ShiftAddTransformer`).
"""
import fairseq  # noqa: F401  (first: fairseq's import registers the plugin, see fairseq_shiftadd/__init__.py)
from .subnet import ShiftAddTransformer, SubnetModelConfig, extract_subnet_state
from .supernet import ShiftAddSupernet, SupernetConfig

__all__ = ["ShiftAddSupernet", "SupernetConfig", "ShiftAddTransformer", "SubnetModelConfig", "extract_subnet_state"]
