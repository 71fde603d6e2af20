"""Shift layers (DeepShift, Elhoushi et al., arXiv 1905.13298), as used by ShiftAddNAS (arXiv 2205.08119).

Weights are signed powers of two, ``w = s * 2**p`` with ``s in {-1, 0, +1}`` and an integer exponent
``p in [-(2**(b-1) - 2), 0]`` for ``b`` weight bits (``b = 5``: ``[-14, 0]``), so every product
``x * w`` is a bit shift of ``x`` plus a sign change. Two parametrisations (:class:`ShiftMode`):

* DeepShift-PS: trainable real exponent ``p`` and sign ``s``; the forward pass uses
  ``clamp(round(p), p_min, 0)`` and ``clamp(round(s), -1, 1)``, the backward pass goes straight
  through the rounding. The stored parameters themselves are clamped in place (the original
  ShiftAddNAS code clamped only a view, so its exponents drifted out of range).
* DeepShift-Q: a real weight ``w``, rounded to ``sign(w) * 2**clamp(round(log2|w|), p_min, 0)`` in the
  forward pass (:func:`round_pow2_ste`), straight-through gradient to ``w``.

Activations may be fixed point (``bits`` in total, ``frac_bits`` after the binary point): then
``x * 2**p`` is exact, an arithmetic shift of the integer ``x * 2**frac_bits``.

**Inference.** Without autograd the float weight ``s * 2**p`` is built once per parameter version and cached
(:class:`~fairseq_shiftadd.ops.kernels.weight_cache.DerivedTensorCache`; rebuilt after an in-place update, a
state load, a device / dtype move or a ``train()`` / ``eval()`` call), so an eval forward is one float GEMM /
conv, as fast as ``nn.Linear``: on CPUs and GPUs a float multiply-add is no slower than a software shift.
A linear layer on a few rows (a decoding step) is limited instead by reading its weight: on CPU
:func:`pow2_linear` then reads packed codes, one byte per weight (sign and exponent, also cached), a quarter of
float32's bytes. An integer / fixed-point deployment (the hardware the cost model prices) would instead store
the 5-bit codes ``(s, p)`` per weight and the activations as integers ``X = x * 2**frac_bits``, compute each
term as the arithmetic shift ``s * (X >> -p)`` (``p <= 0``), accumulate the terms in a wide integer register
(e.g. 32 bits; round-to-nearest shifts add ``2**(-p-1)`` first) and rescale once per output by ``2**-frac_bits``
(or fold that into the next layer's quantiser); this module's fixed-point mode (``activation_bits``) reproduces
that arithmetic exactly in float, up to the rounding of the shifted-out bits.
"""
from __future__ import annotations

import functools
import math
from enum import Enum
from fractions import Fraction
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from .op_counts import OpCounts
from .kernels import dispatch
from .kernels.weight_cache import CompanionCache, DerivedTensorCache, DerivedTensorOwner, records_autograd
from .kinds import OpKind
from .quant import ActivationFakeQuant, QuantConfig, check_bits
from .validate import Conv2dAttributes, Conv2dGeometry, int_in_range, positive_int

__all__ = [
    "ShiftMode",
    "exponent_range",
    "round_ste",
    "round_pow2_ste",
    "ps_weight",
    "ps_parts",
    "clamp_ps_",
    "clamped_ps_weight",
    "PSWeight",
    "fixed_point_ste",
    "pow2_linear",
    "ShiftLinear",
    "ShiftConv2d",
]

WEIGHT_BITS_RANGE = (2, 8)
ACTIVATION_BITS_RANGE = (2, 32)
_FLOAT_BITS = 32
_Layer = TypeVar("_Layer", bound="_ShiftLayer")


class ShiftMode(str, Enum):
    """How a shift layer stores its weights: ``PS`` (exponent and sign) or ``Q`` (a real weight)."""

    PS = "ps"
    Q = "q"


def exponent_range(weight_bits: int = 5) -> Tuple[int, int]:
    """The exponents ``[-(2**(b-1) - 2), 0]`` that ``b = weight_bits`` bits encode (``b = 5``: ``(-14, 0)``).

    Raises:
        ValueError: ``weight_bits`` is not an integer in ``[2, 8]``.
    """
    check_bits("weight_bits", weight_bits, *WEIGHT_BITS_RANGE)
    return -(2 ** (weight_bits - 1) - 2), 0


class _StraightThrough(torch.autograd.Function):
    """``value`` forward (as computed, no arithmetic added); ``grad`` (or ``grad * mask``) to ``x`` backward."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, value: Tensor, mask: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(mask)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return grad if mask is None else grad * mask, None, None


def _straight_through(x: Tensor, value: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """``value`` in the forward pass (exactly); gradient ``1`` (or ``mask``) to ``x`` in the backward pass."""
    return _StraightThrough.apply(x, value.detach(), mask)


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` (half to even) with the straight-through gradient ``d/dx = 1``."""
    return _straight_through(x, torch.round(x.detach()))


@functools.cache
def _sqrt_half_ceiling(dtype: torch.dtype) -> float:
    """The least value of ``dtype`` at or above ``1/sqrt(2)`` (irrational, so no value equals it)."""
    value = torch.tensor(math.sqrt(0.5), dtype=torch.float64).to(dtype)
    if Fraction(value.item()) ** 2 < Fraction(1, 2):
        value = torch.nextafter(value, torch.ones_like(value))
    return value.item()


def _pow2_parts(w: Tensor, exponent_min: int) -> Tuple[Tensor, Tensor]:
    """``(sign(w), clamp(round(log2|w|), exponent_min, 0))``, the rounding exact: with ``w = m * 2**e``
    (``torch.frexp``, ``|m|`` in ``[0.5, 1)``), ``round(log2|w|) = e - 1 + [|m| >= 1/sqrt(2)]``, computed as
    ``e + floor(|m| - t)`` with ``t`` the least value of ``w``'s dtype at or above ``1/sqrt(2)`` (``|m| - t`` is exact,
    the two within a factor 2 of each other; its floor is -1 below ``t``, 0 from ``t`` on). (``log2`` then ``round``
    put the values just above each ``2**(p + 1/2)`` on the wrong side: their logarithm rounds to ``p + 1/2``, then half
    to even.) An exact zero gets sign 0; a NaN gets sign 0 and a NaN exponent (its weight stays NaN).
    """
    mantissa, exponent = torch.frexp(w)
    exponent = mantissa.abs_().sub_(_sqrt_half_ceiling(w.dtype)).floor_().add_(exponent).clamp_(exponent_min, 0)
    return torch.sign(w), exponent


def round_pow2_ste(w: Tensor, weight_bits: int = 5) -> Tensor:
    """DeepShift-Q rounding: ``sign(w) * 2**clamp(round(log2|w|), p_min, 0)``, straight-through gradient.

    ``p_min = -(2**(weight_bits-1) - 2)``. The rounding is in the log domain, so each result is within a
    factor ``sqrt(2)`` of ``w`` unless clamped (``|w| > 1`` becomes 1, ``|w| < 2**(p_min - 1/2)``
    becomes ``2**p_min``); an exact zero stays zero, a NaN NaN. Backward: ``dL/dw = dL/dw_q``.

    On CPU (float32 / float64) one pass over the bits of ``w`` (:func:`~.kernels.dispatch.round_pow2`, the same
    values bit for bit); elsewhere :func:`_pow2_parts`, the reference.

    Shape: any -> same.
    """
    exponent_min, exponent_max = exponent_range(weight_bits)
    value = dispatch.round_pow2(w.detach(), exponent_min, exponent_max, _sqrt_half_ceiling(w.dtype))
    if value is None:
        sign, exponent = _pow2_parts(w.detach(), exponent_min)
        value = exponent.exp2_().mul_(sign)
    return _straight_through(w, value)


def ps_weight(exponent: Tensor, sign: Tensor, weight_bits: int = 5) -> Tensor:
    """DeepShift-PS weight ``s * 2**p`` with ``p = clamp(round(exponent), p_min, 0)`` and the ternary
    ``s = clamp(round(sign), -1, 1)`` (a weight may be exactly zero).

    Backward (straight through the rounding and clamping; ``g = dL/dw``): ``dL/dexponent = g * w * ln 2`` (the
    derivative of ``2**p``) and ``dL/dsign = g`` (the factor ``2**p`` is not applied to the sign gradient, as
    DeepShift's unsymmetric product).

    Shape: exponent, sign any (equal) -> same.
    """
    return _PSWeight.apply(exponent, sign, weight_bits, False)


class _PSWeight(torch.autograd.Function):
    """:func:`ps_weight` (with ``clamp``: :func:`clamped_ps_weight`) and DeepShift-PS's backward (``g * w * ln 2``,
    ``g``): on CPU by the kernels of :mod:`.kernels.cpu_shift` where the clamping is asked for (one pass each way),
    else by in-place tensor operations (about ten passes)."""

    @staticmethod
    def forward(ctx: FunctionCtx, exponent: Tensor, sign: Tensor, weight_bits: int, clamp: bool) -> Tensor:
        low, high = exponent_range(weight_bits)
        weight = dispatch.clamped_ps_weight_(exponent, sign, low, high) if clamp else None
        if weight is None:
            if clamp:
                clamp_ps_(exponent, sign, weight_bits)
            power = torch.round(exponent).clamp_(low, high).exp2_()
            weight = torch.round(sign).clamp_(-1.0, 1.0).mul_(power)
        ctx.save_for_backward(weight)
        return weight

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:
        (weight,) = ctx.saved_tensors
        exponent_grad = None
        if ctx.needs_input_grad[0]:
            grad = grad.contiguous()
            exponent_grad = dispatch.ps_exponent_grad(grad, weight)
            if exponent_grad is None:
                exponent_grad = torch.mul(grad, weight).mul_(math.log(2.0))
        return exponent_grad, grad if ctx.needs_input_grad[1] else None, None, None


def ps_parts(weight: Tensor, weight_bits: int = 5) -> Tuple[Tensor, Tensor]:
    """``(exponent, sign)`` of DeepShift-PS for a float weight: ``clamp(round(log2|w|), p_min, 0)``, ``sign(w)``.

    ``ps_weight(*ps_parts(w))`` is :func:`round_pow2_ste`'s value, and for a weight that already is a signed power
    of two in range (or zero) it is ``w`` itself. Shape: any -> two of the same.
    """
    exponent_min, _ = exponent_range(weight_bits)
    sign, exponent = _pow2_parts(weight.detach(), exponent_min)
    return exponent, sign


@torch.no_grad()
def clamp_ps_(exponent: Tensor, sign: Tensor, weight_bits: int = 5) -> None:
    """Clamp the stored DeepShift-PS parameters themselves, in place: exponent to ``[p_min, 0]``, sign to ``[-1, 1]``
    (the original ShiftAddNAS code clamped only a view, so its exponents drifted out of range)."""
    exponent_min, exponent_max = exponent_range(weight_bits)
    exponent.clamp_(exponent_min, exponent_max)
    sign.clamp_(-1.0, 1.0)


def clamped_ps_weight(exponent: Tensor, sign: Tensor, weight_bits: int = 5) -> Tensor:
    """:func:`clamp_ps_`, then :func:`ps_weight`: what a DeepShift-PS layer reads. On CPU one pass each way
    (:func:`~.kernels.dispatch.clamped_ps_weight_`, the same values bit for bit); those two functions' tensor
    operations are its reference and fallback.

    Shape: exponent, sign any (equal) -> same.
    """
    return _PSWeight.apply(exponent, sign, weight_bits, True)


class PSWeight(nn.Module):
    """A DeepShift-PS weight tensor on its own: trainable ``exponent`` and ``sign``, read as :func:`ps_weight`.

    For modules that hold a shift weight without a layer around it (the supernet's weight slots). Each read
    clamps the stored parameters in place (:func:`clamp_ps_`), as :class:`ShiftLinear` does.

    Shape: exponent, sign, weight ``shape``.

    Args:
        shape: weight shape.
        init: in-place initialiser of a float weight, converted with :func:`ps_parts`.
        weight_bits: 2..8; exponents in ``[-(2**(b-1) - 2), 0]``.
    """

    def __init__(self, shape: Tuple[int, ...], init: Callable[[Tensor], None], weight_bits: int = 5) -> None:
        super().__init__()
        exponent_range(weight_bits)
        self.weight_bits = weight_bits
        float_weight = torch.empty(shape)
        init(float_weight)
        exponent, sign = ps_parts(float_weight, weight_bits)
        self.exponent = nn.Parameter(exponent)
        self.sign = nn.Parameter(sign)

    @property
    def weight(self) -> Tensor:
        """``s * 2**p`` (after clamping the stored parameters): :func:`clamped_ps_weight`."""
        return clamped_ps_weight(self.exponent, self.sign, self.weight_bits)

    @staticmethod
    def state_of(weight: Tensor, weight_bits: int = 5) -> Dict[str, Tensor]:
        """The state dict of a :class:`PSWeight` whose :attr:`weight` is ``weight`` (a signed power of two or 0)."""
        exponent, sign = ps_parts(weight, weight_bits)
        return {"exponent": exponent, "sign": sign}

    def extra_repr(self) -> str:
        return f"shape={tuple(self.exponent.shape)}, weight_bits={self.weight_bits}"


def _check_fixed_point(bits: int, frac_bits: int, prefix: str = "") -> None:
    check_bits(f"{prefix}bits", bits, *ACTIVATION_BITS_RANGE)
    int_in_range(f"{prefix}frac_bits", frac_bits, 0, bits)


def fixed_point_ste(x: Tensor, bits: int, frac_bits: int) -> Tensor:
    """Signed fixed point: ``clamp(round(x * 2**f), -2**(b-1), 2**(b-1) - 1) * 2**-f`` (b = bits, f = frac_bits).

    Backward: clipped straight-through, gradient 1 where ``x`` lies in the representable range
    ``[-2**(b-1-f), (2**(b-1) - 1) * 2**-f]``, 0 outside. Values are exact in float32 for ``b <= 24``.

    Shape: any -> same.

    Raises:
        ValueError: ``bits`` not in ``[2, 32]`` or ``frac_bits`` not in ``[0, bits]``.
    """
    _check_fixed_point(bits, frac_bits)
    step = 2.0**-frac_bits
    low, high = -(2 ** (bits - 1)) * step, (2 ** (bits - 1) - 1) * step
    x_detached = x.detach()
    value = torch.clamp(torch.round(x_detached / step) * step, low, high)
    inside = ((x_detached >= low) & (x_detached <= high)).to(x.dtype)
    return _straight_through(x, value, inside)


def pow2_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, codes: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x, weight, bias)`` for a weight of signed powers of two (a shift layer's ``s * 2**p``): the
    functional core of the shift linears (:class:`ShiftLinear`, the translation models' shift slots).

    ``codes``: the weight's packed form (:func:`~.kernels.dispatch.pow2_codes`), or that of the larger weight it is
    the front slice of, which callers pass at inference (:class:`~.kernels.weight_cache.CompanionCache`). While
    nothing records autograd, a few rows on CPU (a decoding step) are then computed from one byte per weight
    (:func:`~.kernels.dispatch.pow2_linear`: the same products, summed in another order); otherwise ``F.linear``.

    Shape: x (*, K), weight (M, K), bias (M,) or None, codes of an (M', K') weight with M' >= M, K' >= K -> (*, M).
    """
    if codes is not None and not records_autograd((x, weight) if bias is None else (x, weight, bias)):
        y = dispatch.pow2_linear(x, codes, bias, weight.shape[0])
        if y is not None:
            return y
    return F.linear(x, weight, bias)


def _parse_mode(mode: str | ShiftMode) -> ShiftMode:
    try:
        return ShiftMode(mode)
    except ValueError:
        raise ValueError(f"mode must be one of {[m.value for m in ShiftMode]}, got {mode!r}") from None


class _ShiftLayer(DerivedTensorOwner):
    """What :class:`ShiftLinear` and :class:`ShiftConv2d` share: weights, clamping, conversion, input quantisation.

    Subclasses provide ``_check_input(shape, name)`` (validates an input shape; for ``op_counts`` it also
    returns the number of output elements), ``_compute(x, weight)`` (the dense op) and
    ``_float_config(layer)`` (constructor arguments of a float layer).
    """

    def __init__(
        self,
        weight_shape: Tuple[int, ...],
        bias: bool,
        mode: str | ShiftMode,
        weight_bits: int,
        activation_bits: Optional[int],
        activation_frac_bits: Optional[int],
        quant: Optional[QuantConfig],
    ) -> None:
        super().__init__()
        self._weight_cache = DerivedTensorCache()
        self.mode = _parse_mode(mode)
        self.weight_bits = weight_bits
        self.exponent_min, self.exponent_max = exponent_range(weight_bits)
        if activation_bits is None:
            if activation_frac_bits is not None:
                raise ValueError("activation_frac_bits is set but activation_bits is None")
        else:
            if activation_frac_bits is None:
                activation_frac_bits = activation_bits // 2
            _check_fixed_point(activation_bits, activation_frac_bits, prefix="activation_")
            if quant is not None:
                raise ValueError("activation_bits (fixed point) and quant (fake quantisation) are exclusive")
        self.activation_bits = activation_bits
        self.activation_frac_bits = activation_frac_bits
        self.quant = quant
        self.input_quant = ActivationFakeQuant(quant)
        if self.mode is ShiftMode.PS:
            self.exponent = nn.Parameter(torch.empty(weight_shape))
            self.sign = nn.Parameter(torch.empty(weight_shape))
        else:
            self.latent_weight = nn.Parameter(torch.empty(weight_shape))
        self.register_parameter("bias", nn.Parameter(torch.empty(weight_shape[0])) if bias else None)
        self.reset_parameters()

    @property
    def operand_bits(self) -> int:
        """Bit width of the activations the shifts act on (32 for float)."""
        if self.quant is not None:
            return self.quant.bits
        return _FLOAT_BITS if self.activation_bits is None else self.activation_bits

    def _weight_template(self) -> Tensor:
        return self.exponent if self.mode is ShiftMode.PS else self.latent_weight

    def reset_parameters(self) -> None:
        """Initialise like the float layer (Kaiming-uniform weight, uniform bias), then convert the weight."""
        weight = torch.empty_like(self._weight_template())
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        bias = None
        if self.bias is not None:
            bound = 1.0 / math.sqrt(weight[0].numel())
            bias = torch.empty_like(self.bias).uniform_(-bound, bound)
        self.load_float_weight(weight, bias)

    @torch.no_grad()
    def load_float_weight(self, weight: Tensor, bias: Optional[Tensor] = None) -> None:
        """Set the parameters from a float weight (and bias).

        PS: ``p = clamp(round(log2|w|), p_min, 0)``, ``s = sign(w)``; Q: the weight is copied.

        Raises:
            ValueError: ``weight`` has the wrong shape, or ``bias`` is given to a layer without bias.
        """
        template = self._weight_template()
        if weight.shape != template.shape:
            raise ValueError(f"weight must have shape {tuple(template.shape)}, got {tuple(weight.shape)}")
        if self.mode is ShiftMode.PS:
            exponent, sign = ps_parts(weight, self.weight_bits)
            self.sign.copy_(sign)
            self.exponent.copy_(exponent)
        else:
            self.latent_weight.copy_(weight)
        if bias is not None:
            if self.bias is None:
                raise ValueError("bias was given but the layer has bias=False")
            self.bias.copy_(bias)

    @classmethod
    def from_float(
        cls: Type[_Layer], layer: nn.Module, mode: str | ShiftMode = "ps", weight_bits: int = 5, **kw: Any
    ) -> _Layer:
        """Convert a trained float layer (same geometry, device and dtype; weight via :meth:`load_float_weight`).

        ``kw`` are further constructor options (``activation_bits``, ``quant``, ...).
        """
        module = cls(**cls._float_config(layer), mode=mode, weight_bits=weight_bits, **kw)
        module.to(device=layer.weight.device, dtype=layer.weight.dtype)
        module.load_float_weight(layer.weight.detach(), None if layer.bias is None else layer.bias.detach())
        return module

    @torch.no_grad()
    def clamp_(self) -> None:
        """PS: clamp the stored exponent to ``[p_min, 0]`` and sign to ``[-1, 1]``, in place.

        Q keeps its real weight unconstrained (its rounding is clamped).
        """
        if self.mode is ShiftMode.PS:
            clamp_ps_(self.exponent, self.sign, self.weight_bits)

    @property
    def weight(self) -> Tensor:
        """The signed power-of-two weight ``s * 2**p`` that the forward pass uses.

        PS: :func:`ps_weight` (its backward is DeepShift-PS's). Q: :func:`round_pow2_ste`, ``dL/dw_real = g``.
        """
        if self.mode is ShiftMode.Q:
            return round_pow2_ste(self.latent_weight, self.weight_bits)
        return ps_weight(self.exponent, self.sign, self.weight_bits)

    def _quantize_input(self, x: Tensor) -> Tensor:
        if self.activation_bits is not None:
            return fixed_point_ste(x, self.activation_bits, self.activation_frac_bits)
        return x if self.quant is None else self.input_quant(x)  # no identity module call per decoding step

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x.shape, "x")
        return self._compute(self._quantize_input(x), self._forward_weight())

    def _forward_weight(self) -> Tensor:
        """:attr:`weight` after :meth:`clamp_`; without autograd (inference) built once per parameter version.

        The cache (:meth:`~fairseq_shiftadd.ops.kernels.weight_cache.DerivedTensorCache.read`) is rebuilt when a
        parameter changes in place, moves, or when :meth:`train` sets the mode.
        """
        sources = [self.exponent, self.sign] if self.mode is ShiftMode.PS else [self.latent_weight]
        return self._weight_cache.read(sources, self._clamped_weight)

    def _clamped_weight(self) -> Tensor:
        if self.mode is ShiftMode.PS:
            return clamped_ps_weight(self.exponent, self.sign, self.weight_bits)
        return self.weight

    def derived_caches(self) -> Tuple[DerivedTensorCache | CompanionCache, ...]:
        return (self._weight_cache,)

    def _shift_repr(self) -> str:
        text = f"mode={self.mode.value}, weight_bits={self.weight_bits}"
        if self.activation_bits is not None:
            text += f", activation_bits={self.activation_bits}, activation_frac_bits={self.activation_frac_bits}"
        if self.quant is not None:
            text += f", quant_bits={self.quant.bits}"
        return text


class ShiftLinear(_ShiftLayer):
    """Linear layer with signed power-of-two weights: ``y = q(x) @ (s * 2**p)^T + b``.

    ``q`` is the identity, fixed point (``activation_bits``) or fake quantisation (``quant``; the weights
    are already powers of two and are not re-quantised). Gradients: see :attr:`weight`.

    Shape: x (*, in_features) -> y (*, out_features); weight, exponent, sign (out_features, in_features).

    Args:
        in_features: input width K.
        out_features: output width M.
        bias: add a float bias.
        mode: ``"ps"`` (trainable exponent and sign) or ``"q"`` (real weight rounded to powers of two).
        weight_bits: 2..8; exponents lie in ``[-(2**(weight_bits-1) - 2), 0]``.
        activation_bits: if set, inputs are rounded to signed fixed point of this width (2..32).
        activation_frac_bits: fractional bits of that fixed point (default ``activation_bits // 2``).
        quant: fake-quantise the inputs for 8-bit training (exclusive with ``activation_bits``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        mode: str | ShiftMode = "ps",
        weight_bits: int = 5,
        activation_bits: Optional[int] = None,
        activation_frac_bits: Optional[int] = None,
        quant: Optional[QuantConfig] = None,
    ) -> None:
        weight_shape = (positive_int("out_features", out_features), positive_int("in_features", in_features))
        super().__init__(weight_shape, bias, mode, weight_bits, activation_bits, activation_frac_bits, quant)
        self.in_features = in_features
        self.out_features = out_features
        self._codes = CompanionCache()

    @staticmethod
    def _float_config(layer: nn.Module) -> Dict[str, Any]:
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
        return dict(in_features=layer.in_features, out_features=layer.out_features, bias=layer.bias is not None)

    def _check_input(self, shape: Sequence[int], name: str) -> int:
        """Validate ``(*, in_features)``; return the number of output elements."""
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"{name} must have shape (*, in_features={self.in_features}), got {tuple(shape)}")
        return math.prod(shape[:-1]) * self.out_features

    def _compute(self, x: Tensor, weight: Tensor) -> Tensor:
        return pow2_linear(x, weight, self.bias, self._codes.read(weight, dispatch.pow2_codes))

    def derived_caches(self) -> Tuple[DerivedTensorCache | CompanionCache, ...]:
        return (*super().derived_caches(), self._codes)

    def op_counts(self, input_shape: Sequence[int]) -> OpCounts:
        """``N*M`` shift dot products of length K at :attr:`operand_bits` (N = rows of the input)."""
        outputs = self._check_input(tuple(int(d) for d in input_shape), "input_shape")
        return OpCounts.dot_products(
            OpKind.SHIFT, self.operand_bits, outputs, self.in_features, bias=self.bias is not None
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            + self._shift_repr()
        )


class ShiftConv2d(Conv2dAttributes, _ShiftLayer):
    """2-D convolution with signed power-of-two weights (zero padding), ``y = conv2d(q(x), s * 2**p) + b``.

    Inputs are handled as in :class:`ShiftLinear`. Each output element is a shift dot product of length
    ``(in_channels / groups) * kh * kw`` (a depthwise conv is costed per group, not as a dense one).

    Shape: x (N, C_in, H, W) -> y (N, C_out, H_out, W_out) with
    ``H_out = floor((H + 2*pad_h - dil_h*(kh - 1) - 1) / stride_h) + 1`` (likewise W);
    weight, exponent, sign (C_out, C_in / groups, kh, kw).

    Args:
        in_channels, out_channels: channel counts (both divisible by ``groups``).
        kernel_size, stride, padding, dilation: an int or an (h, w) pair each.
        groups: number of channel groups.
        bias, mode, weight_bits, activation_bits, activation_frac_bits, quant: as :class:`ShiftLinear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Tuple[int, int],
        stride: int | Tuple[int, int] = 1,
        padding: int | Tuple[int, int] = 0,
        dilation: int | Tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        mode: str | ShiftMode = "ps",
        weight_bits: int = 5,
        activation_bits: Optional[int] = None,
        activation_frac_bits: Optional[int] = None,
        quant: Optional[QuantConfig] = None,
    ) -> None:
        geometry = Conv2dGeometry.create(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        super().__init__(geometry.weight_shape, bias, mode, weight_bits, activation_bits, activation_frac_bits, quant)
        self.geometry = geometry

    @staticmethod
    def _float_config(layer: nn.Module) -> Dict[str, Any]:
        if not isinstance(layer, nn.Conv2d):
            raise TypeError(f"layer must be an nn.Conv2d, got {type(layer).__name__}")
        if layer.padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros', got {layer.padding_mode!r}")
        if isinstance(layer.padding, str):
            raise ValueError(f"padding must be integers, got {layer.padding!r}")
        return dict(
            in_channels=layer.in_channels,
            out_channels=layer.out_channels,
            kernel_size=tuple(layer.kernel_size),
            stride=tuple(layer.stride),
            padding=tuple(layer.padding),
            dilation=tuple(layer.dilation),
            groups=layer.groups,
            bias=layer.bias is not None,
        )

    def _check_input(self, shape: Sequence[int], name: str) -> int:
        """Validate ``(N, in_channels, H, W)``; return the number of output elements."""
        return self.geometry.check_input(shape, name)

    def _compute(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def op_counts(self, input_shape: Sequence[int]) -> OpCounts:
        """One shift dot product of length ``(C_in / groups) * kh * kw`` per output element."""
        outputs = self._check_input(tuple(int(d) for d in input_shape), "input_shape")
        length = self.geometry.dot_length
        return OpCounts.dot_products(OpKind.SHIFT, self.operand_bits, outputs, length, bias=self.bias is not None)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"bias={self.bias is not None}, " + self._shift_repr()
        )
