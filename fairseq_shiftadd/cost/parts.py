"""What a ShiftAddNAS subnet (arXiv 2205.08119) computes and moves for one :class:`~.workload.Workload`.

The model is split into *parts* (one linear, one attention matmul, one lightweight mixer, ...); each
:class:`Part` carries its arithmetic as :class:`~fairseq_shiftadd.ops.op_counts.OpCounts`, its dot-product terms
(for the latency model), its parameters and the bits it moves at each memory level. The parts follow
``fairseq_shiftadd/models`` (attention.py, lightweight.py, mixer.py, ffn.py, layers.py, supernet.py) exactly.

Arithmetic rules (the operators' own, :meth:`OpCounts.dot_products`): a dot product of length ``K`` costs
``K`` mults and ``K - 1`` adds (mult), ``K`` shifts and ``K - 1`` adds (shift) or ``2K - 1`` adds (add, the
negative L1 distance), plus one add for a bias. Every operation is tagged with ``workload.bits``.
Elementwise work is **not** counted, as in the original: residual additions, LayerNorm, softmax, ReLU,
the ``1/sqrt(hd)`` and ``sqrt(d)`` scalings, positional embeddings, the kernel softmax (it acts on the
``H x K`` weights) and the final log-softmax. It is ``O(T d)`` per layer against ``O(T d^2)`` for the dot
products (the attention softmax is ``1 / head_dim`` of the score matmul). LayerNorm *parameters* are counted
and streamed like any weight.

What runs (batch 1, ``S = src_len``, ``T = tgt_len``, ``B = beam``), under the workload's accounting
(:mod:`.workload`):

* encoder (both accountings): one pass over ``S`` tokens; self-attention over all ``S`` keys; centred
  lightweight mixers.
* decoder, **streaming**: ``T`` incremental steps on ``B`` rows (fairseq's generator expands the encoder
  output to the beam before the first step). Step ``t`` (1-based) projects the new token only; self-attention
  attends to the ``t`` cached keys; the causal mixer applies its ``K`` taps to a window of ``K`` inputs (the
  zero border included, as the module computes); encoder-decoder attention projects its keys/values from the
  last ``n`` encoder outputs (``n * S`` rows per beam row) once, on the first step, and attends to all
  ``n * S`` of them at every step; the tied output projection computes ``vocab_size`` logits per row.
* decoder, **original**: one teacher-forced pass over ``T`` tokens (``B = 1``), like the encoder: every
  linear runs on ``T`` rows, self-attention computes the full ``T x T`` scores and masks the future (as the
  model's full-sequence forward does), the causal mixer applies ``K`` taps per output; encoder-decoder keys
  and values are projected once from ``n * S`` rows and read once by the batch of ``T`` queries. No
  embedding traffic and no output projection.
* token mixers follow the rules of :class:`~fairseq_shiftadd.ops.kinds.BlockType`, which the models read too:
  two-branch blocks (``attention+X``) split the channels (:meth:`BlockType.branch_width`), the lightweight branch
  has a shift linear or not (:attr:`BlockType.has_shift`) and mixes by ``mult`` or ``add``
  (:attr:`BlockType.mixer_op`) with ``BlockType.kernel_size(space.kernel_sizes, layer)`` taps; the attention's
  Q/K/V width and the kernel rows are the caller's (``space.attention_qkv_dim(block)``,
  ``space.kernel_heads(block, num_heads)``); add FFNs have a LayerNorm after each add linear.

Memory-traffic model (bits moved per level; energy per access scales with the bits accessed):

* **DRAM**: every weight (and bias, and LayerNorm parameter) is streamed once per pass that uses it:
  once for the encoder; streaming: once per decoding step for the decoder and the output projection (an
  accelerator's on-chip buffer holds activations, not a model's weights), and once for the cross-attention
  key/value projections (computed once); original: once per sentence for every weight. Shift weights stream
  at ``shift_weight_bits``, others at ``bits``. Streaming reads embedding rows from DRAM per token (``S``
  rows, and ``B`` rows per step); the original charges no embedding.
* **global buffer**: the streamed weights are staged through it; each part reads its activation inputs and
  writes its outputs there once (a linear: ``rows * (in + out)`` values; an attention matmul: queries, the
  keys/values it attends to -- per query row in the streaming decoder, whose beam rows have their own
  caches, once for a batch of queries (the encoder, the original's decoder) -- and its scores or probabilities).
* **NoC**: every value moved between the global buffer and the PE array crosses it once (the global-buffer
  traffic of array parts; embedding rows do not enter the array).
* **RF**: each dot-product term reads its two operands (an activation and a weight, or two activations) and
  updates its partial sum (a read and a write at ``bits``); a bias is read once per output.

Add and shift layers are charged the same traffic rules as multiplications; depthwise mixers are charged
``rows * C * K`` terms, not a dense ``C x C`` layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

from ..ops.op_counts import OpCounts
from ..ops.kinds import BlockType, OpKind
from .workload import Workload

__all__ = [
    "LEVELS",
    "Part",
    "Stream",
    "QueryGroup",
    "encoder_stream",
    "decoder_stream",
    "linear_part",
    "attention_matmul_parts",
    "mixer_part",
    "parameters_part",
    "self_attention_parts",
    "lightweight_parts",
    "token_mixer_parts",
    "cross_attention_parts",
    "ffn_parts",
    "layer_norms_part",
    "embedding_part",
    "output_projection_parts",
]

LEVELS = ("dram", "global_buffer", "noc", "rf")
"""Memory levels, outermost first."""


@dataclass(frozen=True)
class Stream:
    """How often a position-wise part runs: ``tokens`` rows per pass, ``passes`` passes (weights per pass)."""

    tokens: int
    passes: int

    @property
    def rows(self) -> int:
        return self.tokens * self.passes


def encoder_stream(wl: Workload) -> Stream:
    """The encoder: ``src_len`` rows in one pass."""
    return Stream(wl.src_len, 1)


def decoder_stream(wl: Workload) -> Stream:
    """The decoder: streaming, ``beam`` rows per step, ``tgt_len`` steps; original, ``tgt_len`` rows in one pass."""
    return Stream(wl.beam, wl.tgt_len) if wl.incremental else Stream(wl.tgt_len, 1)


@dataclass(frozen=True)
class Part:
    """One costed piece of a layer.

    Args:
        name: dotted name within its layer (``"mixer.attention.q"``, ``"ffn.fc1"``).
        group: what it belongs to (``"self_attention"``, ``"lightweight"``, ``"cross_attention"``, ``"ffn"``,
            ``"norms"``, ``"embedding"``, ``"output_projection"``).
        ops: its arithmetic over the whole workload.
        terms: dot-product terms by the operator computing them (the PE array's work).
        params: parameters it owns (0 for the tied output projection and for attention matmuls).
        traffic_bits: bits moved at each of :data:`LEVELS`.
    """

    name: str
    group: str
    ops: OpCounts
    terms: Mapping[OpKind, int] = field(default_factory=dict)
    params: int = 0
    traffic_bits: Mapping[str, int] = field(default_factory=dict)


def _traffic(dram: int = 0, global_buffer: int = 0, noc: int = 0, rf: int = 0) -> Dict[str, int]:
    return {"dram": dram, "global_buffer": global_buffer, "noc": noc, "rf": rf}


def _rf_bits(terms: int, weight_bits: int, outputs: int, bias: bool, bits: int) -> int:
    """Operand reads (activation at ``bits``, weight at ``weight_bits``) and a psum read + write per term."""
    return terms * (bits + weight_bits + 2 * bits) + (outputs * bits if bias else 0)


def linear_part(
    name: str, group: str, kind: OpKind, stream: Stream, in_dim: int, out_dim: int, bias: bool, wl: Workload
) -> Part:
    """A dense ``in_dim -> out_dim`` linear computed by ``kind`` on every row of ``stream``.

    ``rows * out_dim`` dot products of length ``in_dim``; weights ``out_dim x in_dim`` (+ bias) streamed once
    per pass.
    """
    bits, weight_bits = wl.bits, wl.weight_bits(kind)
    outputs = stream.rows * out_dim
    terms = outputs * in_dim
    streamed = stream.passes * (out_dim * in_dim * weight_bits + (out_dim * bits if bias else 0))
    moved = streamed + stream.rows * (in_dim + out_dim) * bits
    return Part(
        name,
        group,
        OpCounts.dot_products(kind, bits, outputs, in_dim, bias=bias),
        {kind: terms},
        out_dim * in_dim + (out_dim if bias else 0),
        _traffic(streamed, moved, moved, _rf_bits(terms, weight_bits, outputs, bias, bits)),
    )


@dataclass(frozen=True)
class QueryGroup:
    """``queries`` query rows each attending to ``keys`` keys; ``key_reads`` key rows read from the buffer."""

    queries: int
    keys: int
    key_reads: int


def attention_matmul_parts(
    prefix: str, group: str, groups: Sequence[QueryGroup], qkv: int, heads: int, wl: Workload
) -> Tuple[Part, Part]:
    """The two matmuls of multi-head attention over ``groups`` (no weights: both operands are activations).

    scores: per query, head and key a dot product of length ``hd = qkv / heads``; context: per query and
    output channel a dot product of length ``keys`` (the probabilities times the values).
    """
    bits, hd = wl.bits, qkv // heads
    queries = sum(g.queries for g in groups)
    pairs = sum(g.queries * g.keys for g in groups)
    key_reads = sum(g.key_reads for g in groups)
    scores_ops = OpCounts.total_of(OpCounts.dot_products(OpKind.MULT, bits, g.queries * heads * g.keys, hd)
                                   for g in groups)
    context_ops = OpCounts.total_of(OpCounts.dot_products(OpKind.MULT, bits, g.queries * qkv, g.keys)
                                    for g in groups)
    terms = pairs * qkv  # each matmul
    scores_moved = (queries + key_reads) * qkv * bits + pairs * heads * bits  # read q, k; write scores
    context_moved = pairs * heads * bits + (key_reads + queries) * qkv * bits  # read probs, v; write context
    rf = _rf_bits(terms, bits, 0, False, bits)
    return (
        Part(f"{prefix}.scores", group, scores_ops, {OpKind.MULT: terms}, 0,
             _traffic(0, scores_moved, scores_moved, rf)),
        Part(f"{prefix}.context", group, context_ops, {OpKind.MULT: terms}, 0,
             _traffic(0, context_moved, context_moved, rf)),
    )


def mixer_part(
    name: str, kind: OpKind, stream: Stream, channels: int, kernel_size: int, heads: int, wl: Workload
) -> Part:
    """A lightweight (depthwise) mixer: ``rows * C`` dot products of length ``K`` against an ``(H, K)`` kernel.

    ``kind`` is ``MULT`` (lightweight conv) or ``ADD`` (the adder mixers); no bias (as the model's branch).
    """
    bits = wl.bits
    outputs = stream.rows * channels
    terms = outputs * kernel_size
    streamed = stream.passes * heads * kernel_size * bits
    moved = streamed + 2 * outputs * bits  # read each new input once (the window slides in the RF), write
    return Part(
        name,
        "lightweight",
        OpCounts.dot_products(kind, bits, outputs, kernel_size),
        {kind: terms},
        heads * kernel_size,
        _traffic(streamed, moved, moved, _rf_bits(terms, bits, outputs, False, bits)),
    )


def parameters_part(name: str, group: str, params: int, stream: Stream, wl: Workload) -> Part:
    """Parameters used elementwise (LayerNorm gains and biases): streamed once per pass, no counted arithmetic."""
    streamed = stream.passes * params * wl.bits
    return Part(name, group, OpCounts(), {}, params, _traffic(streamed, streamed, streamed, 0))


def self_attention_parts(
    prefix: str, stream: Stream, causal: bool, dim: int, qkv: int, heads: int, wl: Workload
) -> Tuple[Part, ...]:
    """Self-attention at width ``dim``, Q/K/V width ``qkv``: q, k, v, out projections and the two matmuls.

    Encoder (``causal=False``), and the original accounting's teacher-forced decoder: ``rows`` queries over
    ``rows`` keys (the decoder masks the future after computing every score), keys read once for the batch of
    queries. Streaming decoder: step ``t`` projects the new rows only and each of the ``B`` rows attends to
    its ``t`` cached keys.
    """
    if causal and wl.incremental:
        groups = [QueryGroup(stream.tokens, t, stream.tokens * t) for t in range(1, stream.passes + 1)]
    else:
        groups = [QueryGroup(stream.rows, stream.rows, stream.rows)]
    group = "self_attention"
    projections = tuple(
        linear_part(f"{prefix}.{name}", group, OpKind.MULT, stream, dim, qkv, True, wl) for name in ("q", "k", "v")
    )
    out = linear_part(f"{prefix}.out", group, OpKind.MULT, stream, qkv, dim, True, wl)
    return projections + attention_matmul_parts(prefix, group, groups, qkv, heads, wl) + (out,)


def lightweight_parts(
    prefix: str, block: BlockType, stream: Stream, dim: int, heads: int, kernel_size: int, wl: Workload
) -> Tuple[Part, ...]:
    """``linear1 -> [shift linear] -> mixer -> linear2`` at width ``dim`` (``block`` has a lightweight branch)."""
    group = "lightweight"
    parts = [linear_part(f"{prefix}.linear1", group, OpKind.MULT, stream, dim, dim, True, wl)]
    if block.has_shift:
        parts.append(linear_part(f"{prefix}.shift", group, OpKind.SHIFT, stream, dim, dim, True, wl))
    parts.append(mixer_part(f"{prefix}.mixer", block.mixer_op, stream, dim, kernel_size, heads, wl))
    parts.append(linear_part(f"{prefix}.linear2", group, OpKind.MULT, stream, dim, dim, True, wl))
    return tuple(parts)


def token_mixer_parts(
    block: BlockType,
    stream: Stream,
    causal: bool,
    dim: int,
    heads: int,
    wl: Workload,
    *,
    qkv_dim: Optional[int],
    kernel_heads: Optional[int],
    kernel_size: Optional[int],
) -> Tuple[Part, ...]:
    """The token mixer of a layer: attention, a lightweight branch, or both on channel halves.

    Each branch runs at ``block.branch_width(dim)``. ``qkv_dim``: Q/K/V width of the block's attention
    (``SearchSpace.attention_qkv_dim(block)``); ``kernel_heads``: rows of the lightweight kernel
    (``SearchSpace.kernel_heads(block, heads)``); ``kernel_size``: its taps (``block.kernel_size(...)``); each
    ``None`` where the block has no such branch.

    Raises:
        ValueError: a branch of ``block`` lacks its width, rows or kernel size.
    """
    width = block.branch_width(dim)
    parts: Tuple[Part, ...] = ()
    if block.has_attention:
        if qkv_dim is None:
            raise ValueError(f"block {block.value!r} needs the Q/K/V width of its attention")
        parts += self_attention_parts("mixer.attention", stream, causal, width, qkv_dim, heads, wl)
    if block.lightweight_part is not None:
        if kernel_size is None or kernel_heads is None:
            raise ValueError(f"block {block.value!r} needs a kernel size and kernel rows (the space's, for this layer)")
        parts += lightweight_parts("mixer.lightweight", block, stream, width, kernel_heads, kernel_size, wl)
    return parts


def cross_attention_parts(
    dim: int, encoder_dim: int, qkv_dim: int, heads: int, encoder_layers: int, wl: Workload
) -> Tuple[Part, ...]:
    """Encoder-decoder attention over the last ``encoder_layers`` encoder outputs (``n * S`` keys).

    q and out run on every decoder row; k and v project the ``B * n * S`` memory rows once (first step).
    Streaming: every query row reads all ``n * S`` keys at its step; original: the ``T`` queries of the one
    pass read them once.
    """
    group, prefix = "cross_attention", "cross_attention"
    steps = decoder_stream(wl)
    memory = encoder_layers * wl.src_len
    kv_stream = Stream(wl.beam * memory, 1)
    key_reads = steps.rows * memory if wl.incremental else memory
    groups = [QueryGroup(steps.rows, memory, key_reads)]
    return (
        linear_part(f"{prefix}.q", group, OpKind.MULT, steps, dim, qkv_dim, True, wl),
        linear_part(f"{prefix}.k", group, OpKind.MULT, kv_stream, encoder_dim, qkv_dim, True, wl),
        linear_part(f"{prefix}.v", group, OpKind.MULT, kv_stream, encoder_dim, qkv_dim, True, wl),
        *attention_matmul_parts(prefix, group, groups, qkv_dim, heads, wl),
        linear_part(f"{prefix}.out", group, OpKind.MULT, steps, qkv_dim, dim, True, wl),
    )


def ffn_parts(op: OpKind, stream: Stream, dim: int, ffn_dim: int, wl: Workload) -> Tuple[Part, ...]:
    """``fc2(relu(fc1(x)))`` computed by ``op``; the add FFN also has a LayerNorm after each linear."""
    parts = (
        linear_part("ffn.fc1", "ffn", op, stream, dim, ffn_dim, True, wl),
        linear_part("ffn.fc2", "ffn", op, stream, ffn_dim, dim, True, wl),
    )
    if op is OpKind.ADD:
        parts += (parameters_part("ffn.add_norms", "ffn", 2 * ffn_dim + 2 * dim, stream, wl),)
    return parts


def layer_norms_part(stream: Stream, dim: int, count: int, wl: Workload) -> Part:
    """The layer's ``count`` post-norms (2 in the encoder, 3 in the decoder), ``2 * dim`` parameters each."""
    return parameters_part("norms", "norms", count * 2 * dim, stream, wl)


def embedding_part(encoder_dim: int, decoder_dim: int, wl: Workload) -> Part:
    """The shared token embedding, ``vocab x max(d_enc, d_dec)``: ``S`` rows read, then ``B`` per step.

    Under the original accounting it moves nothing (its parameters still count).
    """
    rows = wl.src_len * encoder_dim + wl.tgt_len * wl.beam * decoder_dim
    moved = rows * wl.bits if wl.charges_vocabulary else 0
    return Part("embedding", "embedding", OpCounts(), {}, wl.vocab_size * max(encoder_dim, decoder_dim),
                _traffic(moved, moved, 0, 0))


def output_projection_parts(decoder_dim: int, wl: Workload) -> Tuple[Part, ...]:
    """Logits ``x E[:, :d]^T`` at every step (tied to the embedding: no parameters of its own, no bias).

    None under the original accounting.
    """
    if not wl.charges_vocabulary:
        return ()
    part = linear_part("output_projection", "output_projection", OpKind.MULT, decoder_stream(wl), decoder_dim,
                       wl.vocab_size, False, wl)
    return (Part(part.name, part.group, part.ops, part.terms, 0, part.traffic_bits),)
