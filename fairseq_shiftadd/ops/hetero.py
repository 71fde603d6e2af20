"""Heterogeneous weight sharing between multiplicative, shift and add operators (ShiftAddNAS, arXiv 2205.08119).

The candidates of one layer slot (mult / shift / add, same weight shape) can read one weight tensor.
Trained multiplicative weights are roughly Gaussian, trained adder weights roughly Laplacian, so the add
candidate reads a learnable monotone remapping ``T(w)`` of the shared weight (:class:`PiecewiseLinearRemap`),
and a regulariser pulls the *distribution* of ``T(w)`` toward ``Laplace(0, b)`` (:func:`laplace_regulariser`,
a 1-D Wasserstein distance). Unlike the original code, ``T`` starts as the identity and the regulariser
compares distributions, not softmax-normalised positions against a fresh random sample.
"""
from __future__ import annotations

import functools
import math
from enum import Enum
from typing import Callable, Iterable, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels.weight_cache import DerivedTensorCache, DerivedTensorOwner
from .kinds import OpKind
from .shift import exponent_range, round_pow2_ste
from .validate import positive_int, positive_number

__all__ = [
    "SharingMode",
    "PiecewiseLinearRemap",
    "laplace_regulariser",
    "excess_kurtosis",
    "SharedWeight",
    "weight_for_op",
    "add_remap_regulariser",
]

_Bounds = Tuple[Tensor, Tensor]


class SharingMode(str, Enum):
    """How the mult, shift and add candidates of one slot hold their weights (see :class:`SharedWeight`)."""

    NONE = "none"
    SHARED = "shared"
    HETEROGENEOUS = "heterogeneous"


class PiecewiseLinearRemap(nn.Module):
    """Learnable continuous, monotone, piecewise-linear map ``T``, applied elementwise.

    The range ``[lo, hi]`` (by default the min and max of the detached input) is cut into ``B = num_bins``
    equal bins ``[e_i, e_i + h)``, ``e_i = lo + i h``, ``h = (hi - lo) / B``; bin ``i`` has the slope
    ``s_i = exp(log_scale_i) > 0``::

        T(w) = lo + sum_i s_i * overlap([lo, w], bin i)                 (w in [lo, hi])
             = w + sum_i (s_i - 1) * clamp(w - e_i, 0, h)               (computed form, any w)

    so ``T(lo) = lo``, ``T`` is continuous and strictly increasing, and ``T`` is exactly the identity while
    all ``log_scale = 0`` (the initial value). Outside ``[lo, hi]`` the slope is 1. The sum is evaluated with
    one gather per element (the bin of ``w`` and the cumulative offset before it), so memory is ``O(numel)``.

    Gradients: ``dT/dw = s_j`` inside bin ``j`` (1 outside the range; ``lo``, ``hi`` are constants) and
    ``dT/dlog_scale_i = s_i * clamp(w - e_i, 0, h)``.

    Because ``T`` is elementwise, slicing commutes with it when the bounds are those of the full tensor:
    ``T(w)[:a, :b] == T(w[:a, :b], bounds=remap.bounds(w))``.

    Shape: w any -> same; log_scale (num_bins,).

    Args:
        num_bins: number of equal bins B (the paper uses 100).
    """

    def __init__(self, num_bins: int = 100) -> None:
        super().__init__()
        self.num_bins = positive_int("num_bins", num_bins)
        self.log_scale = nn.Parameter(torch.zeros(num_bins))

    @property
    def scales(self) -> Tensor:
        """The bin slopes ``s = exp(log_scale)`` (positive, so ``T`` is monotone)."""
        return self.log_scale.exp()

    @staticmethod
    def bounds(w: Tensor) -> _Bounds:
        """``(min(w), max(w))`` of the detached tensor, as 0-d tensors."""
        w = w.detach()
        return w.amin(), w.amax()

    def forward(self, w: Tensor, bounds: Optional[_Bounds] = None) -> Tensor:
        """``T(w)``; ``bounds`` = ``(lo, hi)`` as 0-d tensors, by default :meth:`bounds` of ``w`` itself."""
        lo, hi = self.bounds(w) if bounds is None else bounds
        width = (hi - lo) / self.num_bins
        excess = self.scales.to(w.dtype) - 1.0
        # offset[j] = h * sum_{i<j} (s_i - 1): what the bins below bin j add to w.
        offset = width * F.pad(torch.cumsum(excess, 0)[:-1], (1, 0))
        ratio = (w.detach() - lo) / width.clamp_min(torch.finfo(w.dtype).tiny)
        index = ratio.floor().clamp(0, self.num_bins - 1).long()
        within = torch.minimum((w - (lo + index * width)).clamp_min(0.0), width)
        return w + offset[index] + excess[index] * within

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}"


@functools.lru_cache(maxsize=64)
def _laplace_quantiles(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Quantiles of Laplace(0, 1) at the midpoints ``p_i = (i + 1/2) / n``: ``-sign(p - 1/2) ln(1 - 2|p - 1/2|)``.

    Constants, cached per ``(n, dtype, device)`` (every update asks for the same few sizes); read-only.
    """
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor, whatever mode the first call ran in
        centred = (torch.arange(n, dtype=torch.float64, device=device) + 0.5) / n - 0.5
        return (-torch.sign(centred) * torch.log1p(-2.0 * centred.abs())).to(dtype)


def laplace_regulariser(values: Tensor, scale: Optional[float] = 2.0) -> Tensor:
    """Squared 2-Wasserstein distance between the empirical distribution of ``values`` and Laplace(0, b), / b^2.

    In one dimension the optimal transport pairs sorted samples with quantiles::

        R = (1/n) * sum_i (v_(i) / b - q_i)^2,   q_i = F^-1((i + 1/2) / n),  F = CDF of Laplace(0, 1)

    with ``v_(i)`` the ``i``-th smallest value. ``R`` depends on the values only through their
    distribution (not their positions), is differentiable (the gradient goes to each value through its rank:
    ``dR/dv_(i) = 2 (v_(i)/b - q_i) / (n b)``), tends to 0 for a sample of Laplace(0, b) as ``n`` grows
    (about 3e-4 at n = 1e5) and stays about 0.075 for a Gaussian of the same variance.

    ``scale=None`` fits ``b = mean|v|`` (the maximum-likelihood Laplace scale at location 0, not detached):
    ``R`` is then invariant to rescaling the values and only penalises the *shape* (about 0.09 for any
    Gaussian).

    Shape: values any (n elements) -> scalar.

    Raises:
        ValueError: ``values`` is empty or ``scale`` is not None or a positive finite number.
    """
    if values.numel() == 0:
        raise ValueError("values must not be empty")
    positive_number("scale", scale, optional=True)
    flat = values.reshape(-1)
    b = flat.abs().mean().clamp_min(torch.finfo(flat.dtype).tiny) if scale is None else scale
    quantiles = _laplace_quantiles(flat.numel(), flat.dtype, flat.device)
    return (torch.sort(flat).values / b - quantiles).square().mean()


def excess_kurtosis(values: Tensor) -> Tensor:
    """Excess kurtosis ``m4 / m2^2 - 3`` (central moments over all elements): Gaussian 0, Laplace 3, uniform -1.2.

    Shape: values any -> scalar.
    """
    centred = values.reshape(-1) - values.mean()
    return centred.pow(4).mean() / centred.square().mean().square() - 3.0


def weight_for_op(
    op: OpKind,
    stored: Tensor,
    mode: SharingMode,
    remaps: Mapping[str, PiecewiseLinearRemap],
    weight_bits: int = 5,
    cache: Optional[DerivedTensorCache] = None,
) -> Tensor:
    """What candidate ``op`` computes with, read from the tensor it is stored in (the :class:`SharedWeight` table).

    ``mult``: ``stored``; ``add``: ``T_add(stored)`` in HETEROGENEOUS mode, else ``stored``; ``shift``:
    ``q(T_shift(stop_grad(stored)))`` in HETEROGENEOUS mode, else ``q(stored)``, with ``q`` =
    :func:`~fairseq_shiftadd.ops.shift.round_pow2_ste` at ``weight_bits``. ``remaps``: ``T`` by op value (read in
    HETEROGENEOUS mode only). The one implementation of the rule, for :class:`SharedWeight` and the translation
    models' weight slots.

    ``cache``: keeps a derived value (every case but ``stored`` itself) per version of ``stored`` and of the
    remap's slopes while no autograd graph is recorded (:meth:`~.kernels.weight_cache.DerivedTensorCache.read`);
    None: computed on every call.

    Shape: stored any -> same.
    """
    heterogeneous = mode is SharingMode.HETEROGENEOUS
    if op is OpKind.MULT or (op is OpKind.ADD and not heterogeneous):
        return stored
    remap = remaps[op.value] if heterogeneous else None

    def derived() -> Tensor:
        if remap is None:
            return round_pow2_ste(stored, weight_bits)
        if op is OpKind.ADD:
            return remap(stored)
        return round_pow2_ste(remap(stored.detach()), weight_bits)

    if cache is None:
        return derived()
    return cache.read([stored] if remap is None else [stored, *remap.parameters()], derived)


def add_remap_regulariser(
    weight: Tensor, remap: PiecewiseLinearRemap, scale: Optional[float] = None, max_samples: Optional[int] = 65536
) -> Tensor:
    """:func:`laplace_regulariser` of ``T_add(stop_grad(weight))`` (bounds of the whole weight), on at most
    ``max_samples`` uniformly drawn elements (torch's RNG; ``None``: every element). See
    :meth:`SharedWeight.regulariser` for why; its gradient reaches only ``remap``'s slopes.

    Shape: weight any -> scalar.
    """
    values = weight.reshape(-1)
    if max_samples is not None and values.numel() > positive_int("max_samples", max_samples):
        values = values[torch.randint(values.numel(), (max_samples,), device=values.device)]
    return laplace_regulariser(remap(values.detach(), remap.bounds(weight)), scale)


def _default_init(weight: Tensor) -> None:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in = prod(shape[1:])`` (1-D: ``shape[0]``): the
    ``nn.Linear`` / ``nn.Conv2d`` default, as :class:`~fairseq_shiftadd.ops.adder.AddLinear` uses."""
    fan_in = math.prod(weight.shape[1:]) if weight.dim() > 1 else weight.shape[0]
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)


def _as_op(name: str, op: OpKind | str) -> OpKind:
    try:
        return OpKind(op)
    except ValueError:
        raise ValueError(f"{name} must be one of {[k.value for k in OpKind]}, got {op!r}") from None


class SharedWeight(DerivedTensorOwner):
    """The weight of one (layer, slot), read by the mult, shift and add candidates of that slot.

    What :meth:`weight_for` returns, per :class:`SharingMode` (``w``: a stored parameter; ``q``:
    :func:`~fairseq_shiftadd.ops.shift.round_pow2_ste`, i.e. ``sign * 2**clamp(round(log2|.|), p_min, 0)``
    with a straight-through gradient):

    ============== ================== ====================== ==========================
    mode           mult               add                    shift
    ============== ================== ====================== ==========================
    NONE           ``w_mult``         ``w_add``              ``q(w_shift)``
    SHARED         ``w``              ``w``                  ``q(w)``
    HETEROGENEOUS  ``w``              ``T_add(w)``           ``q(T_shift(stop_grad(w)))``
    ============== ================== ====================== ==========================

    NONE keeps one independent parameter per op (the original NLP supernet); the other modes store one
    parameter. In HETEROGENEOUS mode the shift candidate takes its exponents from its *own* remap of the
    gradient-stopped shared weight (docs/method.md section 3): its straight-through gradient trains only
    ``T_shift``'s ``num_bins`` slopes, so the coarse power-of-two rounding never perturbs the weight that
    mult and add train, and shift's gradient does not reshape ``T_add`` (which exists to decouple add from
    mult). The price: in the supernet the shift candidate adapts only through ``T_shift`` (and follows ``w``
    as mult and add train it). Both remaps start as the identity, so at initialisation HETEROGENEOUS
    computes exactly what SHARED computes.

    Every returned tensor has the full shape; a supernet slices it afterwards (``W[:out, :in]``). The remaps
    are elementwise with bounds taken from the full weight, so slicing commutes with them. Without autograd
    (inference) each derived weight (``q``, ``T``) is built once per version of the parameters it depends on
    (:func:`weight_for_op`'s ``cache``, one per op); ``train()`` / ``eval()`` clears the caches.

    Shape: every weight ``shape``; each remap's ``log_scale`` (num_bins,).

    Args:
        shape: weight shape, e.g. ``(max_out, max_in)``.
        ops: the candidates of this slot (each at most once).
        mode: a :class:`SharingMode` or its string value.
        weight_bits: shift weight width (2..8): exponents in ``[-(2**(b-1) - 2), 0]``.
        num_bins: bins of each :class:`PiecewiseLinearRemap`.
        init: in-place initialiser applied to each stored weight (default ``U(+-1/sqrt(fan_in))``).
    """

    def __init__(
        self,
        shape: Tuple[int, ...],
        ops: Sequence[OpKind | str],
        mode: SharingMode | str,
        weight_bits: int = 5,
        num_bins: int = 100,
        init: Optional[Callable[[Tensor], None]] = None,
    ) -> None:
        super().__init__()
        if not isinstance(shape, (tuple, list)) or not shape:
            raise ValueError(f"shape must be a non-empty tuple of positive integers, got {shape!r}")
        self.shape = tuple(positive_int("shape", d) for d in shape)
        self.ops = tuple(_as_op("ops", op) for op in ops)
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be a non-empty sequence of distinct op kinds, got {ops!r}")
        try:
            self.mode = SharingMode(mode)
        except ValueError:
            raise ValueError(f"mode must be one of {[m.value for m in SharingMode]}, got {mode!r}") from None
        exponent_range(weight_bits)
        self.weight_bits = weight_bits
        self.num_bins = positive_int("num_bins", num_bins)

        keys = [op.value for op in self.ops] if self.mode is SharingMode.NONE else ["shared"]
        self.weights = nn.ParameterDict({key: nn.Parameter(torch.empty(self.shape)) for key in keys})
        remapped = [op for op in self.ops if op is not OpKind.MULT and self.mode is SharingMode.HETEROGENEOUS]
        self.remaps = nn.ModuleDict({op.value: PiecewiseLinearRemap(num_bins) for op in remapped})
        with torch.no_grad():
            for weight in self.weights.values():
                (init or _default_init)(weight)
        self._derived = {op: DerivedTensorCache() for op in self.ops}

    def _stored(self, op: OpKind) -> Tensor:
        return self.weights[op.value if self.mode is SharingMode.NONE else "shared"]

    def weight_for(self, op: OpKind | str) -> Tensor:
        """The full-size weight that candidate ``op`` computes with (see the class table).

        Raises:
            ValueError: ``op`` is not an op kind of this slot.
        """
        op = _as_op("op", op)
        if op not in self.ops:
            raise ValueError(f"op must be one of this slot's ops {[k.value for k in self.ops]}, got {op.value!r}")
        return weight_for_op(op, self._stored(op), self.mode, self.remaps, self.weight_bits, self._derived[op])

    def derived_caches(self) -> Iterable[DerivedTensorCache]:
        return self._derived.values()

    def regulariser(self, scale: Optional[float] = None, max_samples: Optional[int] = 65536) -> Tensor:
        """:func:`laplace_regulariser` of ``T_add(w)`` in HETEROGENEOUS mode with an add candidate, else 0.

        NONE and SHARED modes are not regularised: in NONE the add weight is free and trains to its own
        (Laplacian) distribution, in SHARED pulling the one weight toward Laplace would distort the mult
        candidate, which is what the remap avoids. The paper weights this term by 10 in the loss.

        ``scale=None`` (default) fits the Laplace scale to the weights, so only the *shape* of the
        distribution is penalised; the paper's fixed Laplace(0, 2) is far from the scale of Transformer
        weights (|w| ~ 0.05) and would drive ``T`` to inflate the add weights. ``max_samples``: the
        distance is estimated on that many uniformly drawn elements (torch's RNG) when the weight is
        larger, so the cost per update stays bounded (the sort dominates); None uses every element.

        Its gradient reaches ``T_add``'s slopes only: the remap reads the *gradient-stopped* shared weight, so
        the regulariser shapes what the add candidate sees without moving the weight the mult candidate
        reads (undetached, its gradient reached the shared weight at 2-3x the task gradient).
        """
        if OpKind.ADD.value not in self.remaps:
            return self._stored(self.ops[0]).new_zeros(())
        return add_remap_regulariser(self._stored(OpKind.ADD), self.remaps[OpKind.ADD.value], scale, max_samples)

    def num_parameters(self) -> int:
        """Stored scalars: weights and remap slopes."""
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        ops = ", ".join(op.value for op in self.ops)
        return f"shape={self.shape}, ops=({ops}), mode={self.mode.value}, weight_bits={self.weight_bits}"
