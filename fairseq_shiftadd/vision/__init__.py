"""Hybrid vision networks of ShiftAddNAS (arXiv 2205.08119): conv / shift / add bottlenecks and attention.

Pure PyTorch on the shared operators of :mod:`fairseq_shiftadd.ops` (no fairseq): the search space
(:mod:`.space`), blocks (:mod:`.blocks`), the weight-sharing supernet and standalone networks (:mod:`.models`),
energy per image (:mod:`.cost`), data (:mod:`.data`), training (:mod:`.train`), search (:mod:`.search`) and the
console commands (:mod:`.cli`).
"""
from .models import VisionNet, VisionSupernet, extract_subnet, recalibrate_batchnorm
from .space import SPACES, VisionBlock, VisionSpace, VisionSubnet, get_space

__all__ = ["SPACES", "VisionBlock", "VisionSpace", "VisionSubnet", "get_space", "VisionSupernet", "VisionNet",
           "extract_subnet", "recalibrate_batchnorm"]
