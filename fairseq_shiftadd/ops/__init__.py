"""Operators of ShiftAddNAS (arXiv 2205.08119) in plain PyTorch: no fairseq needed.

Shared by the translation models and the vision models. Every operator has a CPU reference path
with the method's formulas and gradients, optional fake quantisation (``quant=QuantConfig(...)``)
and reports its own arithmetic (``op_counts(input_shape) -> OpCounts``).
"""
from .adder import AddConv2d, AddLinear, GradNorm, add_conv2d, add_matmul
from .op_counts import OpCounts
from .elastic import scale_dropout, slice_layer_norm, slice_linear
from .hetero import PiecewiseLinearRemap, SharedWeight, SharingMode, excess_kurtosis, laplace_regulariser
from .kinds import BlockType, OpKind
from .lightconv import LightweightAdd, LightweightConv, LightweightMixer, LightweightShiftAdd, Padding
from .quant import (
    ActivationFakeQuant,
    InputFakeQuant,
    ProductFakeQuant,
    QuantConfig,
    SharedScaleFakeQuant,
    operand_fake_quant,
    quantize_weight,
)
from .shift import ShiftConv2d, ShiftLinear, ShiftMode, exponent_range, fixed_point_ste, round_pow2_ste, round_ste

__all__ = [
    # kinds and accounting
    "BlockType", "OpKind", "OpCounts",
    # shift (DeepShift)
    "ShiftMode", "ShiftLinear", "ShiftConv2d", "exponent_range", "round_ste", "round_pow2_ste", "fixed_point_ste",
    # add (AdderNet)
    "add_matmul", "add_conv2d", "GradNorm", "AddLinear", "AddConv2d",
    # token mixers
    "Padding", "LightweightMixer", "LightweightConv", "LightweightAdd", "LightweightShiftAdd",
    # fake quantisation
    "QuantConfig", "ActivationFakeQuant", "quantize_weight", "ProductFakeQuant", "InputFakeQuant",
    "SharedScaleFakeQuant", "operand_fake_quant",
    # weight sharing and elastic slicing
    "SharingMode", "SharedWeight", "PiecewiseLinearRemap", "laplace_regulariser", "excess_kurtosis",
    "slice_linear", "slice_layer_norm", "scale_dropout",
]
