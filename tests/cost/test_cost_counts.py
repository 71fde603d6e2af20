"""Cost-model counts: against the operators' own op_counts(), hand arithmetic, and the real model's parameters."""
from __future__ import annotations

import dataclasses
import random
import subprocess
import sys

import pytest

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.cost.parts import (
    decoder_stream,
    encoder_stream,
    ffn_parts,
    linear_part,
    token_mixer_parts,
)
from fairseq_shiftadd.ops import (
    AddLinear,
    LightweightAdd,
    LightweightConv,
    LightweightShiftAdd,
    OpCounts,
    QuantConfig,
    ShiftLinear,
)
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import BlockDetails, LayerConfig, SubnetConfig, get_space, sample

B = BlockType
WMT = get_space("wmt14_en_de")
TINY = get_space("tiny")


def _ops(parts, prefix: str = "") -> OpCounts:
    return OpCounts.total_of(p.ops for p in parts if p.name.startswith(prefix))


def transformer_base() -> SubnetConfig:
    """Transformer-base (embed 512, FFN 2048, 8 heads, 6 + 6 layers, attention, mult FFN) in wmt14_en_de."""
    return SubnetConfig(
        encoder_embed_dim=512,
        decoder_embed_dim=512,
        encoder=(LayerConfig(B.ATTENTION, 2048, 8),) * 6,
        decoder=(LayerConfig(B.ATTENTION, 2048, 8, cross_heads=8, enc_dec_span=-1),) * 6,
    )


# --- the operators' own accounting --------------------------------------------------------------


@pytest.mark.parametrize("bits", [32, 8])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "block, make",
    [
        (B.LIGHTWEIGHT_CONV, lambda c, k, h, pad, q: LightweightConv(c, k, h, padding=pad, quant=q)),
        (B.LIGHTWEIGHT_ADD, lambda c, k, h, pad, q: LightweightAdd(c, k, h, padding=pad, quant=q)),
        (B.LIGHTWEIGHT_SHIFTADD, lambda c, k, h, pad, q: LightweightShiftAdd(c, k, h, padding=pad, quant=q)),
    ],
)
def test_lightweight_mixer_matches_module_op_counts(block, make, causal, bits):
    """shift linear + mixer of a lightweight branch == the ops module of the same shape (full sequence).

    The decoder's T incremental steps on B rows do the module's work on a (T, B, C) input.
    """
    C, K, H = 16, 7, 4
    wl = Workload(src_len=9, tgt_len=5, beam=3, bits=bits)
    stream = decoder_stream(wl) if causal else encoder_stream(wl)
    parts = token_mixer_parts(block, stream, causal, C, H, wl, qkv_dim=None, kernel_heads=H, kernel_size=K)
    module = make(C, K, H, "causal" if causal else "centred", QuantConfig(bits=8) if bits == 8 else None)
    T, batch = (wl.tgt_len, wl.beam) if causal else (wl.src_len, 1)
    ours = _ops(parts, "mixer.lightweight.shift") + _ops(parts, "mixer.lightweight.mixer")
    assert ours == module.op_counts((T, batch, C))
    assert {k: b for k, b in ours.ops} == {k: bits for k, _ in ours.ops}  # every op tagged with the workload's bits


@pytest.mark.parametrize("bits", [32, 8])
@pytest.mark.parametrize("op, make", [
    (OpKind.SHIFT, lambda i, o, q: ShiftLinear(i, o, bias=True, quant=q)),
    (OpKind.ADD, lambda i, o, q: AddLinear(i, o, bias=True, quant=q)),
])
def test_ffn_linears_match_module_op_counts(op, make, bits):
    d, f = 24, 40
    wl = Workload(src_len=7, tgt_len=4, beam=2, bits=bits)
    quant = QuantConfig(bits=8) if bits == 8 else None
    for stream, (T, batch) in ((encoder_stream(wl), (7, 1)), (decoder_stream(wl), (4, 2))):
        fc1, fc2 = ffn_parts(op, stream, d, f, wl)[:2]
        assert fc1.ops == make(d, f, quant).op_counts((T, batch, d))
        assert fc2.ops == make(f, d, quant).op_counts((T, batch, f))


def test_mult_linear_follows_dot_product_rule_and_hand_count():
    wl = Workload(src_len=5)
    part = linear_part("x", "ffn", OpKind.MULT, encoder_stream(wl), 6, 4, True, wl)
    assert part.ops == OpCounts.dot_products(OpKind.MULT, 32, 5 * 4, 6, bias=True)
    assert part.ops.count(OpKind.MULT) == 5 * 4 * 6  # N * M * K
    assert part.ops.count(OpKind.ADD) == 5 * 4 * 6  # (K - 1) accumulations + 1 bias per output
    assert part.params == 6 * 4 + 4


def test_depthwise_mixer_is_not_costed_as_dense():
    wl = Workload(src_len=10)
    d, K = 64, 7
    parts = token_mixer_parts(B.LIGHTWEIGHT_CONV, encoder_stream(wl), False, d, 4, wl, qkv_dim=None, kernel_heads=4,
                              kernel_size=K)
    mixer = next(p for p in parts if p.name == "mixer.lightweight.mixer")
    assert mixer.ops.count(OpKind.MULT) == 10 * d * K
    assert mixer.params == 4 * K


# --- one test per block type (hand arithmetic) ------------------------------------------------------


def _attention_mults(rows: int, dim: int, qkv: int, pairs: int) -> int:
    """q, k, v, out projections on ``rows`` rows plus scores and context over ``pairs`` (query, key) pairs."""
    return 3 * rows * dim * qkv + rows * qkv * dim + 2 * pairs * qkv


def _lightweight_counts(rows: int, dim: int, kernel: int, light: BlockType):
    """(mults, adds, shifts) of linear1 -> [shift] -> mixer -> linear2 on ``rows`` rows."""
    linear = rows * dim * dim  # mults of one dense dim x dim linear; adds likewise (K - 1 + bias)
    mults, adds, shifts = 2 * linear, 2 * linear, 0
    if light is B.LIGHTWEIGHT_SHIFTADD:
        shifts, adds = linear, adds + linear
    if light is B.LIGHTWEIGHT_CONV:
        mults, adds = mults + rows * dim * kernel, adds + rows * dim * (kernel - 1)
    else:
        adds += rows * dim * (2 * kernel - 1)
    return mults, adds, shifts


BRANCH_QKV = [(BlockDetails.ORIGINAL, 512), (BlockDetails.COMPACT, 256)]
"""Q/K/V width of the attention branch of ``attention+X`` in wmt14_en_de (qkv_dim 512) under each preset."""


@pytest.mark.parametrize("details, branch_qkv", BRANCH_QKV, ids=lambda v: getattr(v, "value", v))
@pytest.mark.parametrize("block", list(BlockType))
def test_encoder_mixer_per_block_type(block, details, branch_qkv):
    S, d, qkv, H, K = 30, 768, 512, 8, WMT.kernel_sizes[2]
    wl = Workload(src_len=S)
    sub = SubnetConfig(d, 512, (LayerConfig(block, 1024, H),) * 6,
                       (LayerConfig(B.ATTENTION, 1024, 4, cross_heads=4, enc_dec_span=-1),))
    space = dataclasses.replace(WMT, block_details=details)
    parts = CostModel(space, workload=wl).report(sub).layers["encoder.2"]
    ops = _ops([c.part for c in parts], "mixer")
    mults = adds = shifts = 0
    if block is B.ATTENTION:
        mults = _attention_mults(S, d, qkv, S * S)
        adds = 4 * S * d * qkv + S * S * H * (qkv // H - 1) + S * qkv * (S - 1)
    else:
        width = d // 2 if block.has_attention else d
        mults, adds, shifts = _lightweight_counts(S, width, K, block.lightweight_part)
        if block.has_attention:
            a = branch_qkv
            mults += _attention_mults(S, width, a, S * S)
            adds += 4 * S * width * a + S * S * H * (a // H - 1) + S * a * (S - 1)
    assert (ops.count(OpKind.MULT), ops.count(OpKind.ADD), ops.count(OpKind.SHIFT)) == (mults, adds, shifts)


@pytest.mark.parametrize("details, branch_qkv", BRANCH_QKV, ids=lambda v: getattr(v, "value", v))
@pytest.mark.parametrize("block", [b for b in BlockType if b.has_attention])
def test_decoder_mixer_per_block_type(block, details, branch_qkv):
    """Incremental decoding: step t projects B new rows; each row attends to its t cached keys."""
    T, beam, d, qkv, H = 12, 4, 512, 512, 4
    K = WMT.kernel_sizes[0]
    wl = Workload(src_len=10, tgt_len=T, beam=beam)
    sub = SubnetConfig(512, d, (LayerConfig(B.ATTENTION, 1024, 4),) * 6,
                       (LayerConfig(block, 1024, H, cross_heads=4, enc_dec_span=-1),))
    space = dataclasses.replace(WMT, block_details=details)
    parts = CostModel(space, workload=wl).report(sub).layers["decoder.0"]
    ops = _ops([c.part for c in parts], "mixer")
    rows, pairs = T * beam, beam * T * (T + 1) // 2
    width = d // 2 if block.lightweight_part else d
    a = branch_qkv if block.lightweight_part else qkv
    mults = _attention_mults(rows, width, a, pairs)
    adds = 4 * rows * width * a + pairs * H * (a // H - 1) + (pairs - rows) * a
    shifts = 0
    if block.lightweight_part:
        m, ad, shifts = _lightweight_counts(rows, width, K, block.lightweight_part)
        mults, adds = mults + m, adds + ad
    assert (ops.count(OpKind.MULT), ops.count(OpKind.ADD), ops.count(OpKind.SHIFT)) == (mults, adds, shifts)


# --- Transformer-base, whole model, by hand -----------------------------------------------------------


def test_transformer_base_totals_by_hand():
    S = T = 30
    V, d, f, H, hd = 32000, 512, 2048, 8, 64
    cm = CostModel(WMT, workload=Workload(src_len=S, tgt_len=T, beam=1, bits=32, vocab_size=V))
    report = cm.report(transformer_base())
    metrics = cm.metrics(transformer_base())

    # encoder layer: 4 projections, scores and context over S x S, FFN
    enc_mults = 4 * S * d * d + S * S * d + S * S * d + S * f * d + S * d * f
    enc_adds = 4 * S * d * d + S * H * S * (hd - 1) + S * d * (S - 1) + S * f * d + S * d * f
    # decoder layer: per step t = 1..T: 4 projections of 1 row, attention over t keys; cross q/out per step,
    # cross k/v once over S memory rows, cross attention over S keys per step; FFN per step
    prefix_pairs = sum(range(1, T + 1))  # 465
    dec_mults = (4 * T * d * d + 2 * prefix_pairs * d) + (2 * T * d * d + 2 * S * d * d + 2 * T * S * d) \
        + (T * f * d + T * d * f)
    dec_adds = (4 * T * d * d + prefix_pairs * H * (hd - 1) + (prefix_pairs - T) * d) \
        + (2 * T * d * d + 2 * S * d * d + T * S * H * (hd - 1) + T * d * (S - 1)) + (T * f * d + T * d * f)
    out_mults, out_adds = T * V * d, T * V * (d - 1)
    assert metrics["mults"] == 6 * enc_mults + 6 * dec_mults + out_mults
    assert metrics["adds"] == 6 * enc_adds + 6 * dec_adds + out_adds
    assert metrics["shifts"] == 0

    linear = d * d + d
    enc_params = 4 * linear + (f * d + f) + (d * f + d) + 2 * 2 * d
    dec_params = 8 * linear + (f * d + f) + (d * f + d) + 3 * 2 * d
    assert metrics["params"] == V * d + 6 * enc_params + 6 * dec_params

    # DRAM: encoder weights once; decoder weights once per step except cross k/v (once); the output
    # projection's V x d once per step; embedding rows S + T; 32 bits each
    dram_values = 6 * enc_params + 6 * (T * (dec_params - 2 * linear) + 2 * linear) + T * V * d + (S + T) * d
    assert report.traffic_bits["dram"] == 32 * dram_values
    assert metrics == pytest.approx(report.metrics())


def test_two_encoder_layers_of_span_cost_more_cross_attention():
    """enc_dec_span attends to 1, 2, 3 encoder layers: k/v project n * S rows, attention over n * S keys."""
    S, d, qkv = 30, 512, 512
    wl = Workload(src_len=S, tgt_len=10)
    cm = CostModel(WMT, workload=wl)
    mults = {}
    for span, n in ((-1, 1), (1, 2), (2, 3)):
        sub = SubnetConfig(d, d, (LayerConfig(B.ATTENTION, 1024, 4),) * 6,
                           (LayerConfig(B.ATTENTION, 1024, 4, cross_heads=4, enc_dec_span=span),))
        parts = [c.part for c in cm.report(sub).layers["decoder.0"]]
        mults[n] = _ops(parts, "cross_attention").count(OpKind.MULT)
    per_layer = 2 * S * d * qkv + 2 * 10 * S * qkv  # k, v projections + scores, context per encoder layer
    assert mults[2] - mults[1] == per_layer and mults[3] - mults[2] == per_layer


def test_beam_scales_decoder_not_encoder():
    sub = transformer_base()
    one = CostModel(WMT, workload=Workload(beam=1)).report(sub)
    four = CostModel(WMT, workload=Workload(beam=4)).report(sub)
    enc = lambda r: _ops([c.part for c in r.layers["encoder.0"]])  # noqa: E731
    assert enc(one) == enc(four)
    out = lambda r: _ops([c.part for c in r.layers["output_projection"]]).count(OpKind.MULT)  # noqa: E731
    assert out(four) == 4 * out(one)


def test_bits_retag_every_operation():
    sub = sample(WMT, random.Random(3))
    ops8 = CostModel(WMT, workload=Workload(bits=8)).report(sub).ops
    ops32 = CostModel(WMT, workload=Workload(bits=32)).report(sub).ops
    assert {bits for (_, bits) in ops8.ops} == {8} and {bits for (_, bits) in ops32.ops} == {32}
    assert {k: c for (k, _), c in ops8.ops.items()} == {k: c for (k, _), c in ops32.ops.items()}


# --- parameters equal the standalone model's ----------------------------------------------------------


def test_params_equal_standalone_model():
    pytest.importorskip("fairseq")
    from types import SimpleNamespace

    from fairseq.data import Dictionary

    from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig

    dictionary = Dictionary()
    for i in range(50):
        dictionary.add_symbol(f"w{i}")
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    cm = CostModel(TINY, workload=Workload(vocab_size=len(dictionary)))
    rng = random.Random(0)
    for _ in range(4):
        sub = sample(TINY, rng)
        model = ShiftAddTransformer.from_subnet(SubnetModelConfig(space=TINY.name), task, TINY, sub)
        assert cm.metrics(sub)["params"] == sum(p.numel() for p in model.parameters()), sub


def test_cost_model_needs_no_fairseq():
    code = (
        "import sys; sys.modules['fairseq'] = None\n"  # any 'import fairseq' now fails
        "from fairseq_shiftadd.cost import CostModel\n"
        "from fairseq_shiftadd.space import get_space, largest\n"
        "print(CostModel(get_space('tiny')).metrics(largest(get_space('tiny')))['energy_mj'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 0
