"""Operators of ShiftAddNAS (arXiv 2205.08119) in plain PyTorch: no fairseq needed.

Shared by the translation models and the vision models.
"""
from .counts import OpCounts
from .kinds import BlockType, OpKind
from .quant import ActivationFakeQuant, QuantConfig, quantize_weight

__all__ = ["OpCounts", "BlockType", "OpKind", "ActivationFakeQuant", "QuantConfig", "quantize_weight"]
