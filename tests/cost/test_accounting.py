"""The two accountings (streaming | original), the paper's energy anchors, fixed energy, the workload header."""
from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from fairseq_shiftadd.cost import CostModel, Workload, read_workload_header, workload_header
from fairseq_shiftadd.cost.anchors import ANCHOR_SPACE, REPORTED_ENERGY_MJ, anchor_subnet
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import LayerConfig, SubnetConfig, get_space, sample

WMT = get_space("wmt14_en_de")
ORIGINAL = Workload(accounting="original")


def test_original_transformer_base_by_hand():
    """One teacher-forced pass: T-row linears, masked T x T scores, cross k/v once, no vocabulary; weights once."""
    S = T = 30
    V, d, f, H, hd = 32000, 512, 2048, 8, 64
    cm = CostModel(WMT, workload=Workload(src_len=S, tgt_len=T, bits=32, vocab_size=V, accounting="original"))
    sub = anchor_subnet("Transformer-base")
    report, metrics = cm.report(sub), cm.metrics(sub)

    enc_mults = 4 * S * d * d + 2 * S * S * d + 2 * S * f * d
    dec_mults = 4 * T * d * d + 2 * T * T * d + (2 * T * d * d + 2 * S * d * d + 2 * T * S * d) + 2 * T * f * d
    enc_adds = 4 * S * d * d + S * H * S * (hd - 1) + S * d * (S - 1) + 2 * S * f * d
    dec_adds = (4 * T * d * d + T * H * T * (hd - 1) + T * d * (T - 1)) \
        + (2 * T * d * d + 2 * S * d * d + T * S * H * (hd - 1) + T * d * (S - 1)) + 2 * T * f * d
    assert metrics["mults"] == 6 * (enc_mults + dec_mults)  # no output projection
    assert metrics["adds"] == 6 * (enc_adds + dec_adds)

    linear = d * d + d
    enc_params = 4 * linear + (f * d + f) + (d * f + d) + 2 * 2 * d
    dec_params = 8 * linear + (f * d + f) + (d * f + d) + 3 * 2 * d
    assert metrics["params"] == V * d + 6 * (enc_params + dec_params)  # the model's size: embedding included
    assert report.traffic_bits["dram"] == 32 * 6 * (enc_params + dec_params)  # every weight once, no embedding
    assert "output_projection" not in report.layers
    assert report.energy_mj_by_layer["embedding"] == 0.0


@pytest.mark.parametrize("name", list(REPORTED_ENERGY_MJ))
def test_original_accounting_reproduces_the_papers_energies(name):
    """Transformer-base 69.41 mJ and -big 214.34 mJ (45 nm, 32 bits, Q/K/V 512), computed, within 10 %."""
    energy = CostModel(get_space(ANCHOR_SPACE), workload=ORIGINAL).metrics(anchor_subnet(name))["energy_mj"]
    assert abs(energy / REPORTED_ENERGY_MJ[name] - 1) <= 0.10, (name, energy)


def test_big_anchor_is_the_largest_all_attention_subnet():
    sub = anchor_subnet("Transformer-big")
    assert sub.encoder_embed_dim == max(WMT.encoder_embed_dims) and len(sub.decoder) == max(WMT.decoder_layers)
    assert {l.ffn_dim for l in sub.encoder + sub.decoder} == {max(WMT.encoder_ffn_dims)}
    assert WMT.qkv_dim == 512


def test_streaming_costs_more_and_original_ignores_vocabulary_and_charges_weights_once():
    sub = sample(WMT, random.Random(4))
    streaming = CostModel(WMT, workload=Workload()).metrics(sub)["energy_mj"]
    original = CostModel(WMT, workload=ORIGINAL).metrics(sub)["energy_mj"]
    assert original < streaming
    small_vocab = CostModel(WMT, workload=dataclasses.replace(ORIGINAL, vocab_size=100)).metrics(sub)["energy_mj"]
    assert small_vocab == original
    longer = CostModel(WMT, workload=dataclasses.replace(ORIGINAL, tgt_len=60)).report(sub)
    shorter = CostModel(WMT, workload=ORIGINAL).report(sub)
    dram = lambda r: sum(c.part.traffic_bits["dram"] for c in r.layers["decoder.0"])  # noqa: E731
    assert dram(longer) == dram(shorter)  # weights once per sentence, whatever its length
    stream_long = CostModel(WMT, workload=Workload(tgt_len=60)).report(sub)
    stream_short = CostModel(WMT, workload=Workload(tgt_len=30)).report(sub)
    assert dram(stream_long) > 1.9 * dram(stream_short)  # streamed at every step


def test_workload_rejects_bad_accounting_and_beam():
    with pytest.raises(ValueError, match="accounting='paper' not in allowed values"):
        Workload(accounting="paper")
    with pytest.raises(ValueError, match="beam=4: the original accounting is one teacher-forced pass"):
        Workload(beam=4, accounting="original")


def test_tables_name_the_accounting():
    sub = sample(WMT, random.Random(1))
    for accounting in ("streaming", "original"):
        report = CostModel(WMT, workload=Workload(accounting=accounting)).report(sub)
        assert f"{accounting} accounting" in report.table()
        assert report.to_dict()["workload"]["accounting"] == accounting


# --- fixed energy ------------------------------------------------------------------------------------------

SMALL = dataclasses.replace(
    get_space("tiny"), name="tiny_small", encoder_heads=(4,), decoder_self_heads=(4,), decoder_layers=(1,),
    encoder_blocks=(BlockType.LIGHTWEIGHT_CONV, BlockType.ATTENTION, BlockType.ATTENTION_LIGHTWEIGHT_ADD),
    decoder_blocks=(BlockType.ATTENTION, BlockType.ATTENTION_LIGHTWEIGHT_ADD),
)


def _all_subnets(space, enc_dim: int, dec_dim: int):
    """Every subnet of ``space`` (one decoder layer) at the given embedding widths."""
    enc_layer = [LayerConfig(b, f, h, op) for b in space.encoder_blocks for f in space.encoder_ffn_dims
                 for h in space.encoder_heads for op in space.ffn_ops]
    dec_layer = [LayerConfig(b, f, h, op, cross_heads=ch, enc_dec_span=span)
                 for b in space.decoder_blocks for f in space.decoder_ffn_dims for h in space.decoder_self_heads
                 for op in space.ffn_ops for ch in space.decoder_cross_heads for span in space.enc_dec_spans]
    for enc in itertools.product(enc_layer, repeat=space.encoder_layers[0]):
        for dec in dec_layer:
            yield SubnetConfig(enc_dim, dec_dim, enc, (dec,))


@pytest.mark.parametrize("accounting", ["streaming", "original"])
def test_fixed_energy_is_the_cheapest_subnet_of_the_same_size(accounting):
    """Brute force: the minimum energy over every subnet with the same widths and depth."""
    cm = CostModel(SMALL, workload=Workload(vocab_size=1000, accounting=accounting))
    cheapest = min(cm.metrics(s)["energy_mj"] for s in _all_subnets(SMALL, 128, 64))
    sub = sample(SMALL, random.Random(0))
    sub = SubnetConfig(128, 64, sub.encoder, sub.decoder)
    report = cm.report(sub)
    assert cm.fixed_energy_mj(sub) == pytest.approx(cheapest, rel=1e-12)
    assert report.fixed_energy_mj == pytest.approx(cheapest, rel=1e-12)
    assert 0 < report.fixed_energy_share <= 1
    assert "fixed energy" in report.table() and report.to_dict()["fixed_energy_share"] == report.fixed_energy_share


def test_fixed_energy_is_the_whole_energy_in_a_one_point_space_and_larger_under_streaming():
    one_point = dataclasses.replace(
        WMT, name="base_only", encoder_embed_dims=(512,), decoder_embed_dims=(512,), encoder_ffn_dims=(2048,),
        decoder_ffn_dims=(2048,), encoder_heads=(8,), decoder_self_heads=(8,), decoder_cross_heads=(8,),
        decoder_layers=(6,), enc_dec_spans=(-1,), encoder_blocks=(BlockType.ATTENTION,),
        decoder_blocks=(BlockType.ATTENTION,), ffn_ops=(OpKind.MULT,),
    )
    sub = anchor_subnet("Transformer-base")
    report = CostModel(one_point, workload=ORIGINAL).report(sub)
    assert report.fixed_energy_mj == pytest.approx(report.energy_mj, rel=1e-12)
    big = anchor_subnet("Transformer-big")
    share = {a: CostModel(WMT, workload=Workload(accounting=a)).report(big).fixed_energy_share
             for a in ("streaming", "original")}
    assert share["original"] < share["streaming"] < 1


# --- the workload header of subnet files ----------------------------------------------------------------------


def test_workload_header_round_trip(tmp_path):
    workload = Workload(src_len=20, tgt_len=25, beam=5, bits=8, vocab_size=8008)
    path = tmp_path / "best.yaml"
    path.write_text(f"# loss: 3.2\n{workload_header(workload, '45nm')}\n" + sample(WMT, random.Random(0)).to_yaml())
    assert read_workload_header(path) == (workload, "45nm")
    SubnetConfig.load(path)  # still a plain subnet file
    plain = tmp_path / "plain.yaml"
    plain.write_text(sample(WMT, random.Random(0)).to_yaml())
    assert read_workload_header(plain) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text('# cost_workload: {"beam": 0, "profile": "45nm"}\n')
    with pytest.raises(ValueError, match="bad.yaml: invalid '# cost_workload:' line: .*beam"):
        read_workload_header(bad)
