"""Fake quantisation (quantisation-aware training) shared by every operator.

Values are rounded to a ``bits``-bit integer grid and mapped back to float in the forward pass;
the backward pass is the clipped straight-through estimator: gradient 1 where the input lies in
the representable range, 0 where it was clipped.

* Weights: symmetric, one scale per output channel (dim 0) or per tensor.
* Activations: affine, over a running range (exponential moving average of the batch min/max in
  training; frozen in eval).

The operands of one operator are quantised together (:func:`operand_fake_quant`): a product takes an affine
input and symmetric per-output-channel weights (:class:`ProductFakeQuant`); a shift takes an affine input
and keeps its weights, already signed powers of two with 5-bit exponents (:class:`InputFakeQuant`); a
difference ``|x - w|`` needs both on one symmetric grid (:class:`SharedScaleFakeQuant`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .kinds import OpKind
from .validate import int_in_range

__all__ = [
    "QuantConfig",
    "check_bits",
    "fake_quant_affine",
    "fake_quant_symmetric",
    "quantize_weight",
    "RunningRange",
    "ActivationFakeQuant",
    "ProductFakeQuant",
    "InputFakeQuant",
    "SharedScaleFakeQuant",
    "operand_fake_quant",
]

_EPS = 1e-8


def check_bits(name: str, bits: int, low: int = 2, high: int = 16) -> int:
    """Return ``bits`` if it is an integer in ``[low, high]`` (the default: fake quantisation's widths), else raise a
    ValueError naming ``name``."""
    return int_in_range(name, bits, low, high)


@dataclass(frozen=True)
class QuantConfig:
    """Fake-quantisation settings of one operator.

    Args:
        bits: integer width of weights and activations (2..16; 8 for the paper's 8-bit models).
        per_channel: one weight scale per output channel (else one per tensor).
        momentum: EMA factor of the running activation range.
    """

    bits: int = 8
    per_channel: bool = True
    momentum: float = 0.1

    def __post_init__(self) -> None:
        check_bits("bits", self.bits)
        if not 0.0 < self.momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {self.momentum!r}")


def _ste_round_clip(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """``(clamp(round(x / s) + z, qmin, qmax) - z) * s`` with the clipped straight-through gradient."""
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    x_q = (q - zero_point) * scale
    inside = ((x >= (qmin - zero_point) * scale) & (x <= (qmax - zero_point) * scale)).to(x.dtype)
    return x * inside + (x_q - x * inside).detach()


def fake_quant_symmetric(x: Tensor, max_abs: Tensor, bits: int) -> Tensor:
    """Symmetric grid ``s * {-(2^(b-1)-1), ..., 2^(b-1)-1}`` with ``s = max_abs / (2^(b-1)-1)``.

    ``max_abs`` broadcasts against ``x`` (a scalar, or one value per channel).
    """
    qmax = 2 ** (bits - 1) - 1
    scale = (max_abs.detach().to(x.dtype) / qmax).clamp_min(_EPS)
    return _ste_round_clip(x, scale, torch.zeros_like(scale), -qmax, qmax)


def fake_quant_affine(x: Tensor, low: Tensor, high: Tensor, bits: int) -> Tensor:
    """Affine grid over ``[low, high]`` (widened to contain 0) with ``2^b`` levels."""
    low = torch.clamp(low.detach().to(x.dtype), max=0.0)
    high = torch.clamp(high.detach().to(x.dtype), min=0.0)
    qmax = 2**bits - 1
    scale = ((high - low) / qmax).clamp_min(_EPS)
    zero_point = torch.clamp(torch.round(-low / scale), 0, qmax)
    return _ste_round_clip(x, scale, zero_point, 0, qmax)


def quantize_weight(weight: Tensor, config: QuantConfig) -> Tensor:
    """Symmetric fake quantisation of a weight ``(out, ...)``, per output channel if configured."""
    if config.per_channel and weight.dim() > 1:
        max_abs = weight.detach().abs().flatten(1).amax(dim=1)
        max_abs = max_abs.view(-1, *([1] * (weight.dim() - 1)))
    else:
        max_abs = weight.detach().abs().amax()
    return fake_quant_symmetric(weight, max_abs, config.bits)


class RunningRange(nn.Module):
    """Tracks ``[min, max]`` of the tensors it sees: EMA in training, frozen in eval.

    Before any training batch was seen, eval uses the current batch's range.
    """

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        batch_low, batch_high = x.detach().aminmax()
        if self.training:
            with torch.no_grad():
                if bool(self.initialized):
                    self.low.lerp_(batch_low.to(self.low.dtype), self.momentum)
                    self.high.lerp_(batch_high.to(self.high.dtype), self.momentum)
                else:
                    self.low.copy_(batch_low)
                    self.high.copy_(batch_high)
                    self.initialized.fill_(True)
        if not bool(self.initialized):
            return batch_low, batch_high
        return self.low, self.high


class ActivationFakeQuant(nn.Module):
    """Affine fake quantisation of activations over a :class:`RunningRange`; identity if disabled.

    Shape: any -> same.
    """

    def __init__(self, config: Optional[QuantConfig]) -> None:
        super().__init__()
        self.config = config
        self.range = RunningRange(config.momentum) if config is not None else None

    def forward(self, x: Tensor) -> Tensor:
        if self.config is None:
            return x
        low, high = self.range(x)
        return fake_quant_affine(x, low, high, self.config.bits)

    def extra_repr(self) -> str:
        return "disabled" if self.config is None else f"bits={self.config.bits}"


class ProductFakeQuant(ActivationFakeQuant):
    """Operands of a product: affine input over a running range, symmetric per-output-channel weight
    (:func:`quantize_weight`); identity if disabled.

    Shape: x any, weight ``(out, ...)`` -> same shapes.
    """

    def forward(self, x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        if self.config is None:
            return x, weight
        return super().forward(x), quantize_weight(weight, self.config)


class InputFakeQuant(ActivationFakeQuant):
    """Operands of a shift: affine input over a running range; the weight (signed powers of two) as it is.

    Shape: x any, weight any -> same shapes.
    """

    def forward(self, x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        return super().forward(x), weight


class SharedScaleFakeQuant(nn.Module):
    """Fake-quantises an adder layer's input and weight onto ONE symmetric grid; identity if disabled.

    ``|x - w|`` is computed in hardware as an integer subtraction, which is only meaningful when ``x`` and
    ``w`` are integers on the same grid. So, unlike multiplicative layers (per-channel weight scales, affine
    activations; a product rescales afterwards), both use one per-tensor symmetric scale
    ``s = max(|low|, |high|, max|w|) / (2^(b-1) - 1)``, with ``[low, high]`` the running input range (EMA of
    the batch min/max in training, frozen in eval; :class:`RunningRange`).
    Gradients: clipped straight-through.

    Shape: x any, weight any -> same shapes.
    """

    def __init__(self, config: Optional[QuantConfig]) -> None:
        super().__init__()
        self.config = config
        self.range = RunningRange(config.momentum) if config is not None else None

    def max_abs(self, x: Tensor, weight: Tensor) -> Tensor:
        """The grid's largest magnitude ``max(|low|, |high|, max|w|)`` (updates the running range)."""
        low, high = self.range(x)
        return torch.stack([low.abs(), high.abs(), weight.detach().abs().amax().to(low.dtype)]).amax()

    def forward(self, x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
        if self.config is None:
            return x, weight
        max_abs = self.max_abs(x, weight)
        bits = self.config.bits
        return fake_quant_symmetric(x, max_abs, bits), fake_quant_symmetric(weight, max_abs, bits)

    def extra_repr(self) -> str:
        return "disabled" if self.config is None else f"bits={self.config.bits}, shared symmetric scale"


def operand_fake_quant(op: OpKind, config: Optional[QuantConfig]) -> nn.Module:
    """The quantiser of the operands ``(x, w)`` of operator ``op`` (see the module docstring)."""
    kinds = {OpKind.MULT: ProductFakeQuant, OpKind.SHIFT: InputFakeQuant, OpKind.ADD: SharedScaleFakeQuant}
    return kinds[OpKind(op)](config)
