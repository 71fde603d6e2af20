"""Elastic, weight-shared building blocks of the ShiftAddNAS translation supernet (arXiv 2205.08119).

Layout ``T x B x C`` throughout. No block keeps ``active_*`` state: every forward receives what the sampled
layer is (block type, op, heads, widths; input widths are read from the input), and a slot serves each
candidate under a *user* name (the block type or FFN op it belongs to).

Blocks (method section 1):

* :class:`ElasticAttention`: multi-head attention with a fixed Q/K/V width ``qkv`` (heads only change
  ``head_dim = qkv / heads``); ``q = x W_q[:qkv, :d]^T + b_q``, likewise ``k``, ``v`` from the key input, and
  ``y = softmax(q k^T / sqrt(head_dim)) v W_o[:d, :qkv]^T + b_o``. Self-attention (causal in the decoder, with a
  fairseq key/value cache for incremental decoding) or encoder-decoder attention (static key/value, cached
  once per decode).
* :class:`LightweightBranch`: ``linear1 (C -> C) -> [shift linear (C -> C)] -> mixer -> linear2 (C -> C)``
  where the mixer is the lightweight conv (``lightweight_conv``) or its adder form (``lightweight_add``,
  ``lightweight_shiftadd``): ``y[t, c] = sum_j op(h[t + j - pad, c], w~[h(c), j])`` with the kernel
  ``w~ = dropconnect(softmax(W[:H]))``, ``H`` = the layer's heads, centred in the encoder, causal in the decoder
  (:mod:`~fairseq_shiftadd.ops.lightconv`; incremental steps use the same primitive, never a product for adder
  blocks).
* :class:`TokenMixer`: the block types of one layer; ``attention+X`` splits the channels in halves, the first
  through attention (width ``d / 2``, Q/K/V width ``two_branch_qkv_dim``, default ``qkv / 2``), the second
  through ``X`` (width ``d / 2``), and concatenates. The lightweight kernel has the layer's head count as rows
  unless the space fixes it (``lightweight_kernel_heads``, ``two_branch_kernel_heads``: the original's 16 / 4).
* :class:`ElasticFFN`: ``fc2(dropout(relu(fc1(x))))`` with ``fc1: d -> ffn_dim``, ``fc2: ffn_dim -> d`` computed
  by multiplication, by shifts (signed power-of-two weights) or by additions (negative L1,
  ``y = -sum_k |x_k - w_k| + b``). The adder output is large and negative (``-K`` times a typical
  ``|x - w|``), so every add linear of the FFN is followed by a LayerNorm over its outputs (AdderNet follows
  add layers with BatchNorm); without it the ReLU after ``fc1`` zeroes everything. These norms belong to the
  ``add`` FFN only (supernet and standalone alike).

Weight sharing (:class:`WeightSlot`; ``W`` is a :class:`~fairseq_shiftadd.ops.hetero.SharedWeight`, so
``shift`` reads ``q(W)`` (signed powers of two) and, in heterogeneous mode, ``add`` reads ``T_add(W)``).
Every slot is allocated at its largest shape and front-sliced (``W[:out, :in]``, HAT):

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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fairseq.incremental_decoding_utils import with_incremental_state
from torch import Tensor, nn

from ..ops.adder import add_matmul
from ..ops.elastic import slice_layer_norm, slice_linear
from ..ops.hetero import SharedWeight, SharingMode
from ..ops.kinds import BlockType, OpKind
from ..ops.lightconv import Padding, causal_mix_step, lightweight_mix
from ..ops.shift import PSWeight, ShiftMode
from ..space import SearchSpace

__all__ = [
    "ADD_ETA",
    "IncrementalState",
    "SlotUser",
    "WeightSlot",
    "ElasticLayerNorm",
    "ElasticAttention",
    "LightweightBranch",
    "TokenMixer",
    "ElasticFFN",
    "merge_states",
]

ADD_ETA = 0.2
"""Adaptive gradient scale of every adder weight (AdderNet's eta)."""

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]
_Init = Callable[[Tensor], None]


def _xavier(weight: Tensor) -> None:
    nn.init.xavier_uniform_(weight)


def _kernel_init(weight: Tensor) -> None:
    """Xavier-uniform with the fans of an ``(H, 1, K)`` depthwise conv weight (fairseq's lightweight conv)."""
    nn.init.xavier_uniform_(weight.view(weight.size(0), 1, weight.size(1)))


@dataclass(frozen=True)
class SlotUser:
    """How one candidate uses a slot: with which op, at most at which (front) shape."""

    op: OpKind
    shape: Tuple[int, ...]


class _Storage(nn.Module):
    """One stored weight (a :class:`SharedWeight`, or a :class:`PSWeight` for a DeepShift-PS shift candidate) and
    its optional bias ``(shape[0],)``."""

    def __init__(
        self, shape: Tuple[int, ...], ops: Sequence[OpKind], sharing: SharingMode, bias: bool, init: _Init, ps: bool
    ):
        super().__init__()
        self.weight = PSWeight(shape, init) if ps else SharedWeight(shape, ops, sharing, init=init)
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None

    def weight_for(self, op: OpKind) -> Tensor:
        """The full-size weight that ``op`` computes with."""
        return self.weight.weight if isinstance(self.weight, PSWeight) else self.weight.weight_for(op)

    def state(self, op: OpKind, weight: Tensor, bias: Optional[Tensor]) -> Dict[str, Tensor]:
        """The state dict of a ``sharing = none`` storage of the single op ``op`` (of this storage's kind) that
        computes with ``weight`` and ``bias``."""
        if isinstance(self.weight, PSWeight):
            state = _prefixed("weight", PSWeight.state_of(weight, self.weight.weight_bits))
        else:
            state = {f"weight.weights.{op.value}": weight}
        if bias is not None:
            state["bias"] = bias
        return state


class WeightSlot(nn.ModuleDict):
    """One weight slot of a layer (and its bias), read by several candidates ("users").

    ``sharing = none``: each user owns a tensor of its own shape (key: the user's name). Otherwise one tensor
    (key ``"shared"``) of the elementwise largest shape serves all users, as a :class:`SharedWeight` over their
    ops. A user reads :meth:`weight` (the full tensor its op computes with) and front-slices it.

    Shift users read DeepShift-Q weights ``q(w)`` (the default) or, with ``shift_weights = "ps"``, their own
    DeepShift-PS :class:`PSWeight` (exponent and ternary sign; ``sharing = none`` only).

    Args:
        users: user name -> :class:`SlotUser`.
        sharing: a :class:`SharingMode` (or its value).
        bias: whether the slot has a bias (zero-initialised).
        init: initialiser of the stored weights (default Xavier-uniform).
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
        shift_weights: ShiftMode | str = ShiftMode.Q,
    ) -> None:
        super().__init__()
        if not users:
            raise ValueError("users must name at least one candidate")
        sharing = SharingMode(sharing)
        ps = ShiftMode(shift_weights) is ShiftMode.PS
        if ps and sharing is not SharingMode.NONE and any(u.op is OpKind.SHIFT for u in users.values()):
            raise ValueError(
                f"shift_weights='ps' needs sharing='none' (DeepShift-PS keeps its own exponent and sign per "
                f"candidate), got sharing={sharing.value!r}"
            )
        self.users = dict(users)
        self.key_of = {name: name if sharing is SharingMode.NONE else "shared" for name in self.users}
        for key in dict.fromkeys(self.key_of.values()):
            names = [name for name in self.users if self.key_of[name] == key]
            shape = tuple(max(dims) for dims in zip(*(self.users[n].shape for n in names)))
            ops = tuple(dict.fromkeys(self.users[n].op for n in names))
            self[key] = _Storage(shape, ops, sharing, bias, init, ps and ops == (OpKind.SHIFT,))

    def _user(self, user: str) -> SlotUser:
        if user not in self.users:
            raise ValueError(f"user must be one of {sorted(self.users)}, got {user!r}")
        return self.users[user]

    def storage(self, user: str) -> SharedWeight | PSWeight:
        """The :class:`SharedWeight` (or, for a DeepShift-PS shift user, the :class:`PSWeight`) that ``user`` reads."""
        self._user(user)
        return self[self.key_of[user]].weight

    def weight(self, user: str) -> Tuple[Tensor, Optional[Tensor]]:
        """The full-size weight and bias that ``user`` computes with (before slicing)."""
        op = self._user(user).op
        storage = self[self.key_of[user]]
        return storage.weight_for(op), storage.bias

    def linear(self, x: Tensor, user: str, out_dim: int) -> Tensor:
        """``x W[:out, :in]^T + b[:out]`` with the user's op; ``in = x.size(-1)``.

        ``add``: ``y = -sum_k |x_k - W[m, k]| + b[m]`` (AdderNet surrogate gradients, adaptive scale
        :data:`ADD_ETA`); ``shift``: ``W`` is already a signed power of two.

        Shape: x ``(*, in)`` -> ``(*, out_dim)``.
        """
        weight, bias = slice_linear(*self.weight(user), out_dim, x.size(-1))
        if self._user(user).op is not OpKind.ADD:
            return F.linear(x, weight, bias)
        y = add_matmul(x.reshape(1, -1, x.size(-1)), weight.unsqueeze(0), eta=ADD_ETA)
        y = y.view(*x.shape[:-1], out_dim)
        return y if bias is None else y + bias

    def export(self, user: str, shape: Tuple[int, ...]) -> Dict[str, Tensor]:
        """State dict of the standalone slot holding only ``user`` at ``shape`` (``sharing = none``).

        Its weight is what ``user`` computes with here (remapped / rounded as its op reads it), front-sliced.
        """
        weight, bias = self.weight(user)
        weight = weight[tuple(slice(0, n) for n in shape)]
        storage = self[self.key_of[user]]
        return _prefixed(user, storage.state(self._user(user).op, weight, None if bias is None else bias[: shape[0]]))


def _prefixed(prefix: str, state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    return {f"{prefix}.{name}": tensor for name, tensor in state.items()}


def merge_states(states: Mapping[str, Mapping[str, Tensor]]) -> Dict[str, Tensor]:
    """One state dict from the state dicts of named submodules."""
    return {key: tensor for prefix, state in states.items() for key, tensor in _prefixed(prefix, state).items()}


class ElasticLayerNorm(nn.LayerNorm):
    """LayerNorm allocated at ``max_dim``; normalises over the input's width ``d`` with ``gamma[:d], beta[:d]``.

    Shape: ``(*, d)`` -> ``(*, d)``, ``d <= max_dim``.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        weight, bias = slice_layer_norm(self.weight, self.bias, x.size(-1))
        return F.layer_norm(x, (x.size(-1),), weight, bias, self.eps)

    def export(self, dim: int) -> Dict[str, Tensor]:
        weight, bias = slice_layer_norm(self.weight, self.bias, dim)
        return {"weight": weight, "bias": bias}


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(T, B, H * hd)`` -> ``(B, H, T, hd)``."""
    T, B, width = x.shape
    return x.view(T, B, num_heads, width // num_heads).permute(1, 2, 0, 3)


@with_incremental_state
class ElasticAttention(nn.Module):
    """Multi-head attention with a fixed Q/K/V width per user; projections front-sliced (HAT).

    ``y = concat_h softmax(q_h k_h^T / sqrt(hd) + mask) v_h  W_o[:d, :qkv]^T + b_o`` with ``q = x W_q[:qkv, :d]^T
    + b_q`` and ``k, v`` likewise from the key input (width ``d_k``); ``hd = qkv / heads``. ``qkv`` is fixed per
    user (the full ``qkv_dim`` for plain attention, ``qkv_dim / 2`` in a two-branch block). The attention itself
    is :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels; dropout on the probabilities).

    Incremental decoding (fairseq ``incremental_state``): self-attention appends the new key/value to a cache
    ``(B, H, t, hd)``; with ``static_kv`` (encoder-decoder) the key/value are computed on the first step and
    reused. :meth:`reorder_incremental_state` reorders the cache on the batch axis.

    Args:
        users: user name -> ``(max_query_dim, max_key_dim, qkv)``.
        sharing: weight sharing between the users.
        dropout: dropout on the attention probabilities (training only).

    Shape: query ``(T, B, d)``, key ``(S, B, d_k)``, key_padding_mask ``(B, S)`` -> ``(T, B, d)``.
    """

    def __init__(self, users: Mapping[str, Tuple[int, int, int]], sharing: SharingMode | str, dropout: float) -> None:
        super().__init__()
        self.qkv = {name: qkv for name, (_, _, qkv) in users.items()}
        self.q = WeightSlot({n: SlotUser(OpKind.MULT, (qkv, dq)) for n, (dq, _, qkv) in users.items()}, sharing)
        self.k = WeightSlot({n: SlotUser(OpKind.MULT, (qkv, dk)) for n, (_, dk, qkv) in users.items()}, sharing)
        self.v = WeightSlot({n: SlotUser(OpKind.MULT, (qkv, dk)) for n, (_, dk, qkv) in users.items()}, sharing)
        self.out = WeightSlot({n: SlotUser(OpKind.MULT, (dq, qkv)) for n, (dq, _, qkv) in users.items()}, sharing)
        self.dropout = dropout

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        *,
        user: str,
        num_heads: int,
        key_padding_mask: Optional[Tensor] = None,
        causal: bool = False,
        static_kv: bool = False,
        incremental_state: Optional[IncrementalState] = None,
    ) -> Tensor:
        qkv = self.qkv[user]
        if qkv % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the Q/K/V width {qkv}")
        T, B, width = query.shape
        q = _split_heads(self.q.linear(query, user, qkv), num_heads)
        cache = self._get_input_buffer(incremental_state) if incremental_state is not None else {}
        if static_kv and "key" in cache:
            k, v = cache["key"], cache["value"]
        else:
            k = _split_heads(self.k.linear(key, user, qkv), num_heads)
            v = _split_heads(self.v.linear(key, user, qkv), num_heads)
            if not static_kv and "key" in cache:
                k, v = torch.cat([cache["key"], k], dim=2), torch.cat([cache["value"], v], dim=2)
        if incremental_state is not None:
            self._set_input_buffer(incremental_state, {"key": k, "value": v})
        causal = causal and incremental_state is None  # one new query sees the whole cache
        keep = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
        if causal and keep is not None:
            keep = keep & torch.ones(T, k.size(2), dtype=torch.bool, device=query.device).tril()
            causal = False
        dropout = self.dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout, is_causal=causal)
        return self.out.linear(context.permute(2, 0, 1, 3).reshape(T, B, qkv), user, width)

    def export(self, user: str, query_dim: int, key_dim: int) -> Dict[str, Tensor]:
        """State dict of the standalone attention of ``user`` at these widths."""
        qkv = self.qkv[user]
        shapes = {"q": (qkv, query_dim), "k": (qkv, key_dim), "v": (qkv, key_dim), "out": (query_dim, qkv)}
        return merge_states({name: getattr(self, name).export(user, shape) for name, shape in shapes.items()})

    def _get_input_buffer(self, incremental_state: Optional[IncrementalState]) -> Dict[str, Optional[Tensor]]:
        return self.get_incremental_state(incremental_state, "attn_state") or {}

    def _set_input_buffer(self, incremental_state: IncrementalState, buffer: Dict[str, Optional[Tensor]]) -> None:
        self.set_incremental_state(incremental_state, "attn_state", buffer)

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """Reorder the cached keys and values along the batch axis (beam search)."""
        cache = self._get_input_buffer(incremental_state)
        if cache:
            self._set_input_buffer(incremental_state, {k: v.index_select(0, new_order) for k, v in cache.items()})


@with_incremental_state
class LightweightBranch(nn.Module):
    """``linear1 -> [shift linear] -> lightweight mixer -> linear2`` at the input's width ``C``.

    ``h = x W1[:C, :C]^T + b1`` (then ``h = h q(Ws)[:C, :C]^T + bs`` for shiftadd), padded positions zeroed,
    ``m[t, c] = sum_j op(h[t + j - pad, c], w~[h(c), j])`` with ``w~ = dropconnect(softmax(W_k[:H]))`` and
    ``op`` a product (conv) or ``-|a - w|`` (add, shiftadd), then ``y = m W2[:C, :C]^T + b2``. Incremental
    decoding (causal only) buffers the last ``K - 1`` mixer inputs and mixes the window with the same primitive.

    Args:
        users: user name -> ``(lightweight block type, max width)``.
        max_heads: rows of the kernel.
        kernel_size: ``K`` (odd).
        padding: ``"centred"`` (encoder) or ``"causal"`` (decoder).
        sharing: weight sharing between the users.
        weight_dropout: DropConnect probability on the normalised kernel (training only).
        shift_weights: DeepShift variant of the shift linear (``"q"`` or ``"ps"``, see :class:`WeightSlot`).

    Shape: x ``(T, B, C)``, padding_mask ``(B, T)`` -> ``(T, B, C)``.
    """

    def __init__(
        self,
        users: Mapping[str, Tuple[BlockType, int]],
        max_heads: int,
        kernel_size: int,
        padding: Padding | str,
        sharing: SharingMode | str,
        weight_dropout: float,
        shift_weights: ShiftMode | str = ShiftMode.Q,
    ) -> None:
        super().__init__()
        self.kinds = {name: kind for name, (kind, _) in users.items()}
        square = {name: (width, width) for name, (_, width) in users.items()}
        self.linear1 = WeightSlot({n: SlotUser(OpKind.MULT, s) for n, s in square.items()}, sharing)
        shift_users = {n: SlotUser(OpKind.SHIFT, s) for n, s in square.items() if self._has_shift(n)}
        self.shift = WeightSlot(shift_users, sharing, shift_weights=shift_weights) if shift_users else None
        self.kernel = WeightSlot(
            {n: SlotUser(self.mixer_op(n), (max_heads, kernel_size)) for n in users}, sharing, False, _kernel_init
        )
        self.linear2 = WeightSlot({n: SlotUser(OpKind.MULT, s) for n, s in square.items()}, sharing)
        self.kernel_size = kernel_size
        self.padding = Padding(padding)
        self.weight_dropout = weight_dropout

    def _has_shift(self, user: str) -> bool:
        return self.kinds[user] is BlockType.LIGHTWEIGHT_SHIFTADD

    def mixer_op(self, user: str) -> OpKind:
        """The mixing primitive of ``user``: ``MULT`` for lightweight_conv, ``ADD`` for the adder variants."""
        return OpKind.MULT if self.kinds[user] is BlockType.LIGHTWEIGHT_CONV else OpKind.ADD

    def forward(
        self,
        x: Tensor,
        *,
        user: str,
        num_heads: int,
        padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[IncrementalState] = None,
    ) -> Tensor:
        width = x.size(-1)
        if width % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the lightweight width {width}")
        h = self._masked(self.linear1.linear(self._masked(x, padding_mask), user, width), padding_mask)
        if self._has_shift(user):
            h = self._masked(self.shift.linear(h, user, width), padding_mask)
        weight, _ = self.kernel.weight(user)
        if num_heads > weight.size(0):
            raise ValueError(f"num_heads={num_heads} exceeds the {weight.size(0)} allocated kernel rows")
        kernel = F.dropout(F.softmax(weight[:num_heads], dim=-1), p=self.weight_dropout, training=self.training)
        op = self.mixer_op(user)
        eta = ADD_ETA if op is OpKind.ADD else None
        if incremental_state is None:
            mixed = lightweight_mix(h, kernel, op, self.padding, eta)
        else:
            if self.padding is not Padding.CAUSAL or h.size(0) != 1:
                raise ValueError("incremental_state needs causal padding and one position, x (1, B, C)")
            buffer = self.get_incremental_state(incremental_state, "buffer")
            mixed, window = causal_mix_step(h, kernel, op, None if buffer is None else buffer["window"], eta)
            self.set_incremental_state(incremental_state, "buffer", {"window": window})
        return self.linear2.linear(mixed, user, width)

    @staticmethod
    def _masked(x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        return x if padding_mask is None else x.masked_fill(padding_mask.t().unsqueeze(-1), 0.0)

    def export(self, user: str, width: int, num_heads: int) -> Dict[str, Tensor]:
        """State dict of the standalone branch of ``user`` at ``width`` with ``num_heads`` kernel rows."""
        shapes = {"linear1": (width, width), "linear2": (width, width), "kernel": (num_heads, self.kernel_size)}
        if self._has_shift(user):
            shapes["shift"] = (width, width)
        return merge_states({name: getattr(self, name).export(user, shape) for name, shape in shapes.items()})

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """Reorder the buffered mixer inputs along the batch axis (beam search)."""
        buffer = self.get_incremental_state(incremental_state, "buffer")
        if buffer is not None:
            window = buffer["window"].index_select(0, new_order)
            self.set_incremental_state(incremental_state, "buffer", {"window": window})


class TokenMixer(nn.Module):
    """The candidate token mixers of one layer (:class:`BlockType`), over shared or owned slots.

    ``attention``: :class:`ElasticAttention` at width ``d``, Q/K/V width ``qkv_dim``; ``lightweight_*``:
    :class:`LightweightBranch` at width ``d``; ``attention+lightweight_*``: ``concat(attention(x[:, :d/2]),
    lightweight(x[:, d/2:]))``, the attention at Q/K/V width ``space.attention_qkv_dim(block)`` (default
    ``qkv_dim / 2``). The lightweight kernel has ``space.kernel_heads(block, num_heads)`` rows. Users are named
    by block type.

    Args:
        blocks: the candidate block types.
        max_dim: allocated width ``d_max``.
        space: the search space (``qkv_dim`` and the block details).
        max_heads: most self-attention heads.
        kernel_size: lightweight kernel size (ignored without lightweight candidates).
        causal: decoder (causal attention and kernel) or encoder (centred kernel).
        sharing: weight sharing between the candidates.
        attention_dropout: dropout on attention probabilities.
        weight_dropout: DropConnect on the lightweight kernels.
        shift_weights: DeepShift variant of the shift linears (``"q"`` or ``"ps"``).

    Shape: x ``(T, B, d)`` -> ``(T, B, d)``.
    """

    def __init__(
        self,
        blocks: Sequence[BlockType],
        max_dim: int,
        space: SearchSpace,
        max_heads: int,
        kernel_size: Optional[int],
        causal: bool,
        sharing: SharingMode | str,
        attention_dropout: float,
        weight_dropout: float,
        shift_weights: ShiftMode | str = ShiftMode.Q,
    ) -> None:
        super().__init__()
        self.blocks = tuple(BlockType(b) for b in blocks)
        self.causal = causal
        self.space = space
        width = space.mixer_width
        attention_users = {
            b.value: (width(b, max_dim), width(b, max_dim), space.attention_qkv_dim(b))
            for b in self.blocks
            if b.has_attention
        }
        light_users = {b.value: (b.lightweight_part, width(b, max_dim)) for b in self.blocks if b.lightweight_part}
        kernel_rows = max((space.kernel_heads(b, max_heads) for b in self.blocks if b.lightweight_part), default=0)
        self.attention = ElasticAttention(attention_users, sharing, attention_dropout) if attention_users else None
        if light_users and kernel_size is None:
            raise ValueError("kernel_size is required for lightweight blocks")
        padding = Padding.CAUSAL if causal else Padding.CENTRED
        self.lightweight = (
            LightweightBranch(light_users, kernel_rows, kernel_size, padding, sharing, weight_dropout, shift_weights)
            if light_users
            else None
        )

    def forward(
        self,
        x: Tensor,
        block: BlockType,
        num_heads: int,
        padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[IncrementalState] = None,
    ) -> Tensor:
        if block not in self.blocks:
            raise ValueError(f"block must be one of {[b.value for b in self.blocks]}, got {BlockType(block).value!r}")
        common = dict(user=block.value, incremental_state=incremental_state)
        kernel_heads = self.space.kernel_heads(block, num_heads)
        if block.lightweight_part is None:
            return self.attention(x, x, num_heads=num_heads, key_padding_mask=padding_mask, causal=self.causal, **common)
        if not block.has_attention:
            return self.lightweight(x, num_heads=kernel_heads, padding_mask=padding_mask, **common)
        a, b = x.chunk(2, dim=-1)
        return torch.cat(
            [
                self.attention(a, a, num_heads=num_heads, key_padding_mask=padding_mask, causal=self.causal, **common),
                self.lightweight(b, num_heads=kernel_heads, padding_mask=padding_mask, **common),
            ],
            dim=-1,
        )

    def export(self, block: BlockType, dim: int, num_heads: int) -> Dict[str, Tensor]:
        """State dict of the standalone mixer of ``block`` at width ``dim``."""
        half = self.space.mixer_width(block, dim)
        states = {}
        if block.has_attention:
            states["attention"] = self.attention.export(block.value, half, half)
        if block.lightweight_part:
            states["lightweight"] = self.lightweight.export(block.value, half, self.space.kernel_heads(block, num_heads))
        return merge_states(states)


class ElasticFFN(nn.Module):
    """Position-wise FFN ``fc2(dropout(relu(fc1(x))))`` computed by ``mult``, ``shift`` or ``add``.

    ``fc1 = W1[:f, :d]``, ``fc2 = W2[:d, :f]`` (``f`` = the sampled FFN width, ``d`` = the input width); for
    ``add`` each linear is followed by a LayerNorm over its outputs (``fc1_add_norm`` of width ``f``,
    ``fc2_add_norm`` of width ``d``): ``fc(x) = LN(-||x - W||_1 + b)``; without them the add FFN diverged
    (non-finite gradients within the first updates on Multi30k). Users are named by op.

    Args:
        ops: the candidate FFN ops.
        max_dim: allocated model width.
        max_ffn_dim: allocated hidden width.
        sharing: weight sharing between the ops.
        shift_weights: DeepShift variant of the shift FFN (``"q"`` or ``"ps"``).

    Shape: x ``(T, B, d)`` -> ``(T, B, d)``.
    """

    def __init__(
        self,
        ops: Sequence[OpKind],
        max_dim: int,
        max_ffn_dim: int,
        sharing: SharingMode | str,
        shift_weights: ShiftMode | str = ShiftMode.Q,
    ) -> None:
        super().__init__()
        self.ops = tuple(OpKind(op) for op in ops)
        fc1 = {op.value: SlotUser(op, (max_ffn_dim, max_dim)) for op in self.ops}
        fc2 = {op.value: SlotUser(op, (max_dim, max_ffn_dim)) for op in self.ops}
        self.fc1 = WeightSlot(fc1, sharing, shift_weights=shift_weights)
        self.fc2 = WeightSlot(fc2, sharing, shift_weights=shift_weights)
        has_add = OpKind.ADD in self.ops
        self.fc1_add_norm = ElasticLayerNorm(max_ffn_dim) if has_add else None
        self.fc2_add_norm = ElasticLayerNorm(max_dim) if has_add else None

    def forward(self, x: Tensor, op: OpKind, ffn_dim: int, activation_dropout: float) -> Tensor:
        if op not in self.ops:
            raise ValueError(f"op must be one of {[o.value for o in self.ops]}, got {OpKind(op).value!r}")
        h = self._project(self.fc1, self.fc1_add_norm, x, op, ffn_dim)
        h = F.dropout(F.relu(h), p=activation_dropout, training=self.training)
        return self._project(self.fc2, self.fc2_add_norm, h, op, x.size(-1))

    @staticmethod
    def _project(slot: WeightSlot, norm: Optional[ElasticLayerNorm], x: Tensor, op: OpKind, out_dim: int) -> Tensor:
        y = slot.linear(x, op.value, out_dim)
        return norm(y) if op is OpKind.ADD else y

    def export(self, op: OpKind, dim: int, ffn_dim: int) -> Dict[str, Tensor]:
        """State dict of the standalone FFN of ``op`` at these widths."""
        states = {"fc1": self.fc1.export(op.value, (ffn_dim, dim)), "fc2": self.fc2.export(op.value, (dim, ffn_dim))}
        if op is OpKind.ADD:
            states.update(fc1_add_norm=self.fc1_add_norm.export(ffn_dim), fc2_add_norm=self.fc2_add_norm.export(dim))
        return merge_states(states)
