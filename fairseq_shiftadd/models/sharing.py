"""Weight slots: how the candidates of a ShiftAddNAS translation supernet layer (arXiv 2205.08119) share weights.

A slot is allocated at its largest shape and front-sliced (``W[:out, :in]``, HAT); its candidates read ``W`` by the rule
of :class:`~fairseq_shiftadd.ops.hetero.SharedWeight` (:func:`~fairseq_shiftadd.ops.hetero.weight_for_op`), so ``shift``
reads ``q(W)`` (signed powers of two) and, in heterogeneous mode, ``add`` reads ``T_add(W)``. Each candidate reads a
slot under a *user* name (the block type or FFN op it belongs to):

============================= ======================================= ============================================
slot (per layer)              ``sharing = none``: one tensor per      ``shared`` / ``heterogeneous``: one tensor for
============================= ======================================= ============================================
FFN ``fc1``, ``fc2``          FFN op (mult, shift, add)               all FFN ops
add-FFN LayerNorms            the add op (in every mode)              the add op
attention ``q, k, v, out``    attention-containing block type (4)     all attention-containing block types
lightweight ``linear1/2``     lightweight-containing block type (6)   all lightweight-containing block types
lightweight ``shift``         ``*lightweight_shiftadd`` block type    both ``*lightweight_shiftadd`` types
lightweight kernel            lightweight-containing block type (6)   all (conv: ``W``; add, shiftadd: ``T_add(W)``)
encoder-decoder attention     (one candidate)                         (one candidate)
LayerNorms of the layer       (one per position, shared)              (one per position, shared)
============================= ======================================= ============================================

Biases travel with their weight (shared when it is). A standalone subnet is built from the same classes with
one candidate per slot, at the subnet's exact sizes and ``sharing = none``.

Adder gradients (every adder weight: FFN ``fc1`` / ``fc2`` and the adder mixers' kernels): AdderNet's surrogate
gradients, rescaled to the norm of the gradient a multiplicative layer gets for the same input and output
gradient, ``dw <- ||g^T x||_F / ||dw|| * dw`` (:data:`ADD_GRAD_NORM`, :data:`ADD_ETA`), instead of
AdderNet's fixed ``0.2 * sqrt(numel(w))``. AdderNet's rule ignores the loss's scale: fairseq divides the summed
loss's gradients by the token count, so at 4096 tokens an add candidate's step on a weight shared with a mult
candidate (under the same Adam moments) was 0.04-0.08x the mult candidate's (``benchmarks/add_step_size.py``).
The matched rule is linear in the output gradient (it follows the loss scale, fp16 loss scaling included) and
gives an add step of about the size a mult step has in the same place (0.7-1.0x, measured alike).

Quantisation-aware training: see :mod:`.quantisers`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.adder import GradNorm, add_matmul, prepared_add_weight
from ..ops.elastic import slice_linear
from ..ops.hetero import PiecewiseLinearRemap, SharingMode, add_remap_regulariser, weight_for_op
from ..ops.kernels import dispatch
from ..ops.kernels.weight_cache import CompanionCache, DerivedTensorCache, DerivedTensorOwner
from ..ops.kinds import OpKind
from ..ops.quant import QuantConfig
from ..ops.shift import PSWeight, ShiftMode, pow2_linear
from .legacy_keys import legacy_key
from .quantisers import operand_quantisers, quantised, quantiser_state
from .states import prefixed

__all__ = ["ADD_ETA", "ADD_GRAD_NORM", "add_weight_scale", "SlotUser", "WeightSlot"]

ADD_ETA = 1.0
"""Adaptive gradient scale of every adder weight: the norm of ``dw`` is ``ADD_ETA`` times the target of
:data:`ADD_GRAD_NORM` (1: the multiplicative layer's gradient norm)."""

ADD_GRAD_NORM = GradNorm.MULT
"""Target norm of the adder weight gradients: a multiplicative layer's, ``||g^T x||_F`` (module docstring)."""

_Init = Callable[[Tensor], None]


def add_weight_scale(out_dim: int, in_dim: int) -> float:
    """``alpha = sqrt((out_dim + in_dim) / 2)``: an add linear of these widths computes with ``alpha * W``.

    ``1 / alpha`` is the RMS of a Xavier-uniform ``(out_dim, in_dim)`` weight, so ``alpha * W`` starts at unit
    RMS, the scale of the LayerNorm-ed inputs (see :meth:`WeightSlot.linear`). Depends only on the sliced
    widths, so a supernet and its standalone subnet agree.
    """
    return math.sqrt((out_dim + in_dim) / 2)


def _xavier(weight: Tensor) -> None:
    nn.init.xavier_uniform_(weight)


@dataclass(frozen=True)
class SlotUser:
    """How one candidate uses a slot: with which op, at most at which (front) shape."""

    op: OpKind
    shape: Tuple[int, ...]


class WeightSlot(DerivedTensorOwner):
    """One weight slot of a layer (and its bias), read by several candidates ("users").

    ``sharing = none``: each user owns a tensor of its own shape (key: the user's name). Otherwise one tensor
    (key ``"shared"``) of the elementwise largest shape serves all users. A user reads :meth:`read` (the full
    tensor its op computes with, :func:`~fairseq_shiftadd.ops.hetero.weight_for_op`: ``W``, ``q(W)`` for shift,
    and in heterogeneous mode ``T_add(W)`` / ``q(T_shift(W))``) and front-slices it.

    Shift users read DeepShift-Q weights ``q(w)`` (the default) or, with ``shift_weights = "ps"``, their own
    DeepShift-PS :class:`~fairseq_shiftadd.ops.shift.PSWeight` (exponent and ternary sign; ``sharing = none`` only).

    State-dict keys (under the slot's name, e.g. ``encoder.layers.0.ffn.fc1``; ``<key>`` is ``shared`` or a
    user's name)::

        weight.<key>                  the stored weight (mult, add and DeepShift-Q shift users)
        ps_weight.<key>.exponent      a DeepShift-PS shift user's exponent and sign
        ps_weight.<key>.sign
        bias.<key>                    its bias (slots with biases)
        remap.<op>.log_scale          heterogeneous mode: the bin slopes of T_add / T_shift
        operand_quant.<user>.range.*  with quant: each user's running input range

    Checkpoints from before these names (``<key>.weight.weights.<key or op>``, ``<key>.weight.exponent``,
    ``<key>.weight.remaps.<op>.log_scale``, ``<key>.bias``) are rewritten on load by
    :meth:`upgrade_state_dict_named` (:data:`~.legacy_keys.LEGACY_KEYS`, the one mapping).

    Args:
        users: user name -> :class:`SlotUser`.
        sharing: a :class:`SharingMode` (or its value).
        bias: whether the slot has a bias (zero-initialised).
        init: initialiser of the stored weights (default Xavier-uniform).
        quant: fake-quantise the operands of :meth:`linear` (one quantiser and input range per user).
        shift_weights: ``"q"`` or ``"ps"`` (a :class:`ShiftMode`).

    Raises:
        ValueError: no users, or ``shift_weights = "ps"`` with shift users and ``sharing`` other than none.
    """

    def __init__(
        self,
        users: Mapping[str, SlotUser],
        sharing: SharingMode | str,
        bias: bool = True,
        init: _Init = _xavier,
        quant: Optional[QuantConfig] = None,
        shift_weights: ShiftMode | str = ShiftMode.Q,
    ) -> None:
        super().__init__()
        if not users:
            raise ValueError("users must name at least one candidate")
        self.sharing = SharingMode(sharing)
        ps = ShiftMode(shift_weights) is ShiftMode.PS
        if ps and self.sharing is not SharingMode.NONE and any(u.op is OpKind.SHIFT for u in users.values()):
            raise ValueError(
                f"shift_weights='ps' needs sharing='none' (DeepShift-PS keeps its own exponent and sign per "
                f"candidate), got sharing={self.sharing.value!r}"
            )
        self.users = dict(users)
        self.key_of = {name: name if self.sharing is SharingMode.NONE else "shared" for name in self.users}
        self.weight = nn.ParameterDict()
        self.ps_weight = nn.ModuleDict()
        self.bias = nn.ParameterDict() if bias else None
        for key in dict.fromkeys(self.key_of.values()):
            names = [name for name in self.users if self.key_of[name] == key]
            shape = tuple(max(dims) for dims in zip(*(self.users[n].shape for n in names)))
            if ps and all(self.users[n].op is OpKind.SHIFT for n in names):
                self.ps_weight[key] = PSWeight(shape, init)
            else:
                self.weight[key] = nn.Parameter(torch.empty(shape))
                with torch.no_grad():
                    init(self.weight[key])
            if self.bias is not None:
                self.bias[key] = nn.Parameter(torch.zeros(shape[0]))
        remapped = {user.op for user in self.users.values() if user.op is not OpKind.MULT}
        heterogeneous = self.sharing is SharingMode.HETEROGENEOUS
        self.remap = nn.ModuleDict({op.value: PiecewiseLinearRemap() for op in OpKind
                                    if heterogeneous and op in remapped})
        self.operand_quant = operand_quantisers({name: user.op for name, user in self.users.items()}, quant)
        self._derived = {(self.key_of[name], user.op): DerivedTensorCache() for name, user in self.users.items()}
        self._companions = {(self.key_of[name], user.op): CompanionCache() for name, user in self.users.items()
                            if user.op is not OpKind.MULT}  # shift: packed codes; add: scaled, prepared weight

    def _user(self, user: str) -> SlotUser:
        if user not in self.users:
            raise ValueError(f"user must be one of {sorted(self.users)}, got {user!r}")
        return self.users[user]

    def read(self, user: str) -> Tuple[Tensor, Optional[Tensor]]:
        """The full-size weight and bias that ``user`` computes with (before slicing).

        A derived weight (``q(W)``, ``T_add(W)``, ``q(T_shift(W))``, DeepShift-PS ``s * 2**p``) is built once per
        version of the parameters it depends on while no autograd graph is recorded (inference; one cached tensor
        per stored tensor and op, cleared by ``train()`` / ``eval()``:
        :class:`~fairseq_shiftadd.ops.kernels.weight_cache.DerivedTensorOwner`), and on every call otherwise.
        """
        op, key = self._user(user).op, self.key_of[user]
        bias = None if self.bias is None else self.bias[key]
        cache = self._derived[key, op]
        if key in self.ps_weight:
            ps_weight = self.ps_weight[key]
            return cache.read(list(ps_weight.parameters()), lambda: ps_weight.weight), bias
        return weight_for_op(op, self.weight[key], self.sharing, self.remap, cache=cache), bias

    def derived_caches(self) -> Iterable[DerivedTensorCache | CompanionCache]:
        return (*self._derived.values(), *self._companions.values())

    def regulariser(self, user: str) -> Tensor:
        """:func:`~fairseq_shiftadd.ops.hetero.add_remap_regulariser` of the weight an ``add`` user reads in
        heterogeneous mode (0 otherwise): see :meth:`~fairseq_shiftadd.ops.hetero.SharedWeight.regulariser`."""
        op, key = self._user(user).op, self.key_of[user]
        if op is not OpKind.ADD or OpKind.ADD.value not in self.remap:
            return next(self.parameters()).new_zeros(())
        return add_remap_regulariser(self.weight[key], self.remap[OpKind.ADD.value])

    def upgrade_state_dict_named(self, state_dict: Dict[str, Tensor], name: str) -> None:
        """Rewrite, in place, this slot's keys of a checkpoint saved before the current names (fairseq calls this
        on every module when a model loads a state dict; keys already current are left alone)."""
        prefix = f"{name}." if name else ""
        for old in [k for k in state_dict if k.startswith(prefix)]:
            new = legacy_key(old[len(prefix):], self.key_of.values())
            if new is not None:
                state_dict[prefix + new] = state_dict.pop(old)

    def linear(self, x: Tensor, user: str, out_dim: int) -> Tensor:
        """``x W[:out, :in]^T + b[:out]`` with the user's op; ``in = x.size(-1)``.

        ``add``: ``y = (c(x) - sum_k |x_k - a W[m, k]|) / a + b[m]`` with ``a = add_weight_scale(out, in)`` and
        ``c(x) = mean_m' sum_k |x_k - a W[m', k]|`` (the rows of ``y - b`` have mean 0), for outputs that a
        normalisation over ``m`` follows (the add FFN's LayerNorms), which removes ``c(x)`` and the factor
        ``1 / a``: the layer's normalised output is AdderNet's for the weights ``a W``.

        * ``c(x)`` removes AdderNet's large row offset before any rounding (``centre_outputs`` of
          :func:`~fairseq_shiftadd.ops.adder.add_matmul`).
        * ``a W``: an adder output moves with ``x_k`` only where ``x_k`` lies within the spread of the weights
          of column ``k`` (``d/dx_k |x_k - w| = sign``). With Xavier-scale weights (RMS ``1 / a``, 0.02-0.04)
          against LayerNorm-ed inputs (RMS 1) the layer is nearly ``sum_k w_mk sign(x_k)``, whose sensitivity
          to ``x`` exceeds its output spread 5-30 fold: measured, float32 rounding grew 10-30x per add FFN,
          and an ``iwslt14_de_en`` subnet with add FFNs stayed 0.17 nats (KL per token) from its float64
          evaluation in float32 with the offset removed. ``a W`` (unit RMS at initialisation, the inputs'
          scale, as trained AdderNet weights) is well conditioned, and puts AdderNet's hardtanh input
          gradient in the inputs' units; the stored ``W`` that the mult candidates read is unchanged.
        * ``/ a``: the output varies as much as a multiplicative layer's ``x W^T`` (not ``a`` times more),
          so the gradients that reach it are of a mult layer's size.
        * gradients: AdderNet's surrogates; the weight gradient scaled to ``ADD_ETA`` times the norm of a
          multiplicative layer's, ``||g^T x||_F`` (:data:`ADD_GRAD_NORM`; the factors ``a`` and ``1 / a``
          cancel in the chain rule).

        ``shift``: ``W`` is already a signed power of two (:func:`~fairseq_shiftadd.ops.shift.pow2_linear`; at
        inference on CPU a few rows read its packed codes, cached per key). At inference without ``quant`` an add
        user's ``a W`` and the CPU forward's weight-only work on it are kept too, per slice shape
        (:func:`~fairseq_shiftadd.ops.kernels.dispatch.prepare_neg_l1`). With ``quant``, ``x`` and the sliced
        weight (``a W`` for add; for shift ``x`` only) are fake-quantised first
        (:func:`~fairseq_shiftadd.ops.quant.operand_fake_quant`).

        Shape: x ``(*, in)`` -> ``(*, out_dim)``.
        """
        full_weight, full_bias = self.read(user)
        weight, bias = slice_linear(full_weight, full_bias, out_dim, x.size(-1))
        op = self._user(user).op
        if op is OpKind.MULT:
            return F.linear(*quantised(self.operand_quant, user, x, weight), bias)
        companion = self._companions[self.key_of[user], op]
        if op is OpKind.SHIFT:
            codes = companion.read(full_weight, dispatch.pow2_codes)
            return pow2_linear(*quantised(self.operand_quant, user, x, weight), bias, codes)
        scale = add_weight_scale(out_dim, x.size(-1))
        kept = None if self.operand_quant is not None else companion.read(  # quantised weights change per call
            full_weight, lambda _: prepared_add_weight(weight * scale, centred=True), key=tuple(weight.shape))
        if kept is None:
            x, weight = quantised(self.operand_quant, user, x, weight * scale)
            weight, prepared = weight.unsqueeze(0), None
        else:
            weight, prepared = kept
        rows = x.reshape(1, -1, x.size(-1))
        y = add_matmul(rows, weight, ADD_ETA, centre_outputs=True, grad_norm=ADD_GRAD_NORM, prepared=prepared)
        y = y.view(*x.shape[:-1], out_dim) / scale
        return y if bias is None else y + bias

    def export(self, user: str, shape: Tuple[int, ...]) -> Dict[str, Tensor]:
        """State dict of the standalone slot holding only ``user`` at ``shape`` (``sharing = none``).

        Its weight is what ``user`` computes with here (remapped / rounded as its op reads it), front-sliced.
        """
        weight, bias = self.read(user)
        weight = weight[tuple(slice(0, n) for n in shape)]
        if self.key_of[user] in self.ps_weight:
            state = prefixed(f"ps_weight.{user}",
                             PSWeight.state_of(weight, self.ps_weight[self.key_of[user]].weight_bits))
        else:
            state = {f"weight.{user}": weight}
        if bias is not None:
            state[f"bias.{user}"] = bias[: shape[0]]
        return {**state, **quantiser_state(self.operand_quant, user, "operand_quant")}
