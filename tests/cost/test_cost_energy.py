"""Energy and analytical latency: unit costs of docs/method.md section 5 applied to the counts and the traffic."""
from __future__ import annotations

import random

import pytest

from fairseq_shiftadd.cost import METRICS, CostModel, Workload, load_profile
from fairseq_shiftadd.cost.analytical import part_cycles
from fairseq_shiftadd.cost.parts import encoder_stream, linear_part
from fairseq_shiftadd.cost.energy import part_energy_pj
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import LayerConfig, SubnetConfig, get_space, sample

WMT = get_space("wmt14_en_de")
# docs/method.md section 5, typed here independently of profiles/45nm.yaml
UNIT_PJ = {
    (OpKind.MULT, 32): 3.7, (OpKind.ADD, 32): 0.9, (OpKind.SHIFT, 32): 0.13,
    (OpKind.MULT, 8): 0.2, (OpKind.ADD, 8): 0.03, (OpKind.SHIFT, 8): 0.024,
}
PJ_PER_16BIT = {"dram": 200.0, "global_buffer": 6 * 3.7, "noc": 2 * 3.7, "rf": 1 * 3.7}


def _expected_energy_mj(report) -> float:
    compute = sum(count * UNIT_PJ[key] for key, count in report.ops.ops.items())
    memory = sum(bits / 16 * PJ_PER_16BIT[level] for level, bits in report.traffic_bits.items())
    return (compute + memory) / 1e9


@pytest.mark.parametrize("bits", [32, 8])
def test_energy_is_counts_times_unit_energies(bits):
    cm = CostModel(WMT, profile="45nm", workload=Workload(bits=bits, beam=2))
    rng = random.Random(bits)
    for _ in range(3):
        sub = sample(WMT, rng)
        report = cm.report(sub)
        assert report.energy_mj == pytest.approx(_expected_energy_mj(report), rel=1e-12)
        assert cm.metrics(sub)["energy_mj"] == pytest.approx(report.energy_mj, rel=1e-12)
        assert sum(report.energy_mj_by_layer.values()) == pytest.approx(report.energy_mj, rel=1e-12)
        assert sum(report.energy_mj_by_group.values()) == pytest.approx(report.energy_mj, rel=1e-12)


def test_one_linear_energy_by_hand():
    """A 32-bit 10-row 6 -> 4 linear with bias, streamed once: compute and every level by hand."""
    wl = Workload(src_len=10)
    part = linear_part("x", "ffn", OpKind.MULT, encoder_stream(wl), 6, 4, True, wl)
    terms, outputs = 10 * 4 * 6, 10 * 4
    assert part.traffic_bits == {
        "dram": 32 * (6 * 4 + 4),
        "global_buffer": 32 * (6 * 4 + 4) + 32 * 10 * (6 + 4),
        "noc": 32 * (6 * 4 + 4) + 32 * 10 * (6 + 4),
        "rf": terms * 4 * 32 + outputs * 32,  # activation, weight, psum read + write; bias once per output
    }
    energy = part_energy_pj(part, load_profile("45nm"))
    assert energy["mult"] == pytest.approx(terms * 3.7) and energy["add"] == pytest.approx(terms * 0.9)
    assert energy["shift"] == 0
    for level, bits in part.traffic_bits.items():
        assert energy[level] == pytest.approx(bits / 16 * PJ_PER_16BIT[level])


def _with_ffn(op: OpKind) -> SubnetConfig:
    enc = (LayerConfig(BlockType.ATTENTION, 2048, 8, op),) * 6
    dec = (LayerConfig(BlockType.ATTENTION, 2048, 8, op, cross_heads=8, enc_dec_span=-1),) * 6
    return SubnetConfig(512, 512, enc, dec)


def test_ffn_operators_are_charged_their_own_ops_and_traffic():
    cm = CostModel(WMT)
    reports = {op: cm.report(_with_ffn(op)) for op in OpKind}
    ffn = {op: [c for _, c in r.parts if c.part.name.startswith("ffn.fc")] for op, r in reports.items()}
    for op, costs in ffn.items():
        kinds = {kind for c in costs for (kind, _) in c.part.ops.ops}
        assert kinds == ({OpKind.ADD} if op is OpKind.ADD else {op, OpKind.ADD})  # no mults charged as shifts
        for c in costs:  # add and shift layers move data too
            assert all(c.part.traffic_bits[level] > 0 for level in ("dram", "global_buffer", "noc", "rf"))
    # shift weights stream at 5 bits: less DRAM than mult; add weights are full width: as much as mult
    dram = {op: sum(c.part.traffic_bits["dram"] for c in costs) for op, costs in ffn.items()}
    passes = 6 + 6 * 30  # encoder layers once, decoder layers at each of the 30 steps
    assert dram[OpKind.MULT] - dram[OpKind.SHIFT] == passes * 2 * 2048 * 512 * (32 - 5)
    assert dram[OpKind.ADD] == dram[OpKind.MULT]
    energy = {op: r.energy_mj for op, r in reports.items()}
    assert energy[OpKind.SHIFT] < energy[OpKind.MULT]


def test_analytical_latency_is_a_roofline_in_ms():
    wl = Workload(src_len=10)
    part = linear_part("x", "ffn", OpKind.MULT, encoder_stream(wl), 512, 2048, True, wl)
    pes, clock_hz, dram_bytes_per_s = 16 * 12, 250e6, 12.8e9
    compute_s = 10 * 2048 * 512 / pes / clock_hz
    memory_s = part.traffic_bits["dram"] / 8 / dram_bytes_per_s
    assert part_cycles(part, load_profile("45nm").accelerator) / clock_hz == pytest.approx(max(compute_s, memory_s))
    cm = CostModel(WMT)
    sub = sample(WMT, random.Random(0))
    report = cm.report(sub)
    assert cm.metrics(sub)["analytical_latency_ms"] == pytest.approx(report.latency_ms)
    total_cycles = sum(c.cycles for _, c in report.parts)
    assert report.latency_ms == pytest.approx(total_cycles / clock_hz * 1e3)  # milliseconds, not seconds


def test_metrics_keys_and_predictor():
    class FakePredictor:
        calls = 0

        def predict(self, subs):
            FakePredictor.calls += 1
            return [float(len(s.decoder)) for s in subs]

    subs = [sample(WMT, random.Random(i)) for i in range(3)]
    plain = CostModel(WMT).metrics(subs[0])
    assert set(plain) == set(METRICS) - {"predicted_latency_ms"}
    cm = CostModel(WMT, latency_predictor=FakePredictor())
    batch = cm.metrics_batch(subs)
    assert FakePredictor.calls == 1
    assert [m["predicted_latency_ms"] for m in batch] == [float(len(s.decoder)) for s in subs]
    assert {k: v for k, v in batch[0].items() if k != "predicted_latency_ms"} == plain
    with pytest.raises(ValueError, match="latency_predictor"):
        CostModel(WMT, latency_predictor=3)
    with pytest.raises(ValueError, match="LatencyPredictor.load"):  # the cost model reads no files
        CostModel(WMT, latency_predictor="predictor.pt")


def test_invalid_subnet_and_workload_are_rejected():
    cm = CostModel(WMT)
    bad = SubnetConfig(500, 512, (LayerConfig(BlockType.ATTENTION, 2048, 8),) * 6,
                       (LayerConfig(BlockType.ATTENTION, 2048, 8, cross_heads=8, enc_dec_span=-1),))
    with pytest.raises(ValueError, match="encoder_embed_dim=500"):
        cm.metrics(bad)
    good = sample(WMT, random.Random(1))
    cm.metrics(good)  # its genes are now cached as valid; a bad gene must still be caught
    with pytest.raises(ValueError, match="decoder\\[0\\].ffn_dim=5000"):
        cm.metrics(SubnetConfig(good.encoder_embed_dim, good.decoder_embed_dim, good.encoder,
                                (LayerConfig(BlockType.ATTENTION, 5000, 8, cross_heads=8, enc_dec_span=-1),)))
    with pytest.raises(ValueError, match="bits=16 not in profile '45nm'"):
        CostModel(WMT, workload=Workload(bits=16))
    for kwargs, message in (({"bits": 12}, "bits=12"), ({"beam": 0}, "beam"), ({"src_len": 2.5}, "src_len"),
                            ({"shift_weight_bits": 40}, "shift_weight_bits")):
        with pytest.raises(ValueError, match=message):
            Workload(**kwargs)


def test_report_dict_and_table():
    cm = CostModel(get_space("tiny"), workload=Workload(vocab_size=100))
    sub = sample(get_space("tiny"), random.Random(2))
    report = cm.report(sub)
    data = report.to_dict()
    assert data["metrics"] == cm.metrics(sub)
    assert list(data["layers"]) == ["embedding"] + [f"encoder.{i}" for i in range(len(sub.encoder))] + [
        f"decoder.{i}" for i in range(len(sub.decoder))] + ["output_projection"]
    table = report.table()
    assert "decoder.0" in table and f"{report.energy_mj:.3f} mJ" in table
