"""Measured latency: the timing protocol, HAT's protocol on a tiny subnet, the trimmed mean, the resumable dataset."""
from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path
from typing import List

import pytest
import torch

from fairseq_shiftadd.cost import Workload
from fairseq_shiftadd.latency import (
    CSV_FIELDS,
    LatencyMeasurement,
    TimingProtocol,
    build_latency_model,
    collect_latency_dataset,
    measure_latency,
    read_latency_csv,
    time_model,
    trimmed_mean,
)
from fairseq_shiftadd.space import get_space, largest, sample

TINY = get_space("tiny")
FAST = TimingProtocol(src_len=4, tgt_len=3, warmup=0, runs=1)  # protocol shortened for tests
VOCAB = 20
DATASET = dict(protocol=FAST, vocab_size=VOCAB)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "values, expected",
    [
        (list(range(10)), 4.5),  # keeps 1..8
        (list(range(1, 21)), 10.5),  # keeps 3..18
        ([1000.0] + [5.0] * 8 + [-1000.0], 5.0),  # the outliers are cut
        ([7.0], 7.0),
        ([3.0, 1.0], 1.0),  # keeps the lower one: int(2 * 0.1) = 0, int(2 * 0.9) = 1
    ],
)
def test_trimmed_mean_known_numbers(values: List[float], expected: float) -> None:
    assert trimmed_mean(values) == pytest.approx(expected)
    assert trimmed_mean(list(reversed(values))) == pytest.approx(expected)  # order does not matter


def test_trimmed_mean_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        trimmed_mean([])
    with pytest.raises(ValueError, match="low=0.5, high=0.2"):
        trimmed_mean([1.0], 0.5, 0.2)


@pytest.mark.parametrize("beam", [1, 3])
def test_time_model_runs_the_protocol(beam: int) -> None:
    """Encoder on one source of src_len tokens; decoder tgt_len incremental steps on beam rows, reordered each step."""
    torch.manual_seed(0)
    model = build_latency_model(TINY, sample(TINY, random.Random(1)), vocab_size=30)
    encoder_inputs, decoder_calls, reorders = [], [], []
    model.encoder.register_forward_pre_hook(lambda _, args: encoder_inputs.append(tuple(args[0].shape)))

    def record_decoder(_, args, kwargs):
        decoder_calls.append((tuple(args[0].shape), id(kwargs["incremental_state"]), len(kwargs["incremental_state"])))

    model.decoder.register_forward_pre_hook(record_decoder, with_kwargs=True)
    reorder = model.decoder.reorder_incremental_state_scripting

    def record_reorder(state, new_order):
        reorders.append(sorted(new_order.tolist()))
        return reorder(state, new_order)

    model.decoder.reorder_incremental_state_scripting = record_reorder
    src_len, tgt_len, warmup, runs = 5, 6, 1, 2
    m = time_model(model, TimingProtocol(src_len=src_len, tgt_len=tgt_len, beam=beam, warmup=warmup, runs=runs))

    assert m.encoder_ms > 0 and m.decoder_ms > 0 and m.total_ms == pytest.approx(m.encoder_ms + m.decoder_ms)
    # once for the decoder's encoder output, then warmup + runs timed calls; always batch 1
    assert encoder_inputs == [(1, src_len)] * (1 + warmup + runs)
    passes = warmup + runs
    assert [shape for shape, _, _ in decoder_calls] == [(beam, t + 1) for t in range(tgt_len)] * passes
    states = [state for _, state, _ in decoder_calls]
    assert len(set(states[::tgt_len])) == passes  # a fresh incremental state per run ...
    assert all(len(set(states[i : i + tgt_len])) == 1 for i in range(0, len(states), tgt_len))  # ... kept per run
    assert all(filled > 0 for _, _, filled in decoder_calls[1:tgt_len])  # the cache is really used
    assert reorders == [list(range(beam))] * (tgt_len * passes)  # a permutation of the beam rows per step


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_measure_latency_on_a_tiny_subnet(clock: str) -> None:
    m = measure_latency(TINY, largest(TINY), replace(FAST, beam=2, clock=clock), VOCAB)
    assert isinstance(m, LatencyMeasurement)
    assert m.encoder_ms > 0 and m.decoder_ms > 0


@pytest.mark.parametrize("setting, value, message", [
    ("device", "tpu", "device='tpu' not supported"),
    ("src_len", 0, "src_len=0 must be an int >= 1"),
    ("tgt_len", 2.5, "tgt_len=2.5 must be an int >= 1"),
    ("beam", 0, "beam=0 must be an int >= 1"),
    ("warmup", -1, "warmup=-1 must be an int >= 0"),
    ("runs", True, "runs=True must be an int >= 1"),
    ("clock", "sundial", "clock='sundial' not in allowed values"),
])
def test_timing_protocol_names_the_bad_field(setting: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TimingProtocol(**{setting: value})


def test_timing_protocol_fields_and_defaults() -> None:
    """HAT's protocol by default; the fields are the latency CSV's columns; a torch.device is stored as its name."""
    assert TimingProtocol() == TimingProtocol("cpu", 30, 30, 1, 5, 20, "wall")
    assert TimingProtocol.field_names() == ("device", "src_len", "tgt_len", "beam", "warmup", "runs", "clock")
    assert set(TimingProtocol.field_names()) <= set(CSV_FIELDS)
    assert TimingProtocol(device=torch.device("cpu")) == TimingProtocol(device="cpu")
    recorded = FAST.recorded()
    assert recorded["device"].startswith("cpu:") and "(1 threads)" in recorded["device"]
    assert {k: v for k, v in recorded.items() if k != "device"} == {
        "src_len": 4, "tgt_len": 3, "beam": 1, "warmup": 0, "runs": 1, "clock": "wall"}


def test_timing_protocol_for_a_workload() -> None:
    workload = Workload(src_len=7, tgt_len=9, beam=4)
    assert TimingProtocol.for_workload(workload) == TimingProtocol(src_len=7, tgt_len=9, beam=4)


def test_measure_latency_rejects_bad_input() -> None:
    other = largest(get_space("hat_wmt14"))
    with pytest.raises(ValueError, match="not in allowed values"):
        measure_latency(TINY, other, FAST, VOCAB)
    cpu_clock = replace(FAST, clock="cpu")
    torch.set_num_threads(2)
    try:
        with pytest.raises(ValueError, match="clock='cpu' times one CPU thread"):
            replace(FAST, clock="cpu")
        with pytest.raises(ValueError, match="clock='cpu' times one CPU thread"):  # threads changed since
            measure_latency(TINY, largest(TINY), cpu_clock, VOCAB)
    finally:
        torch.set_num_threads(1)


def test_collector_resumes(tmp_path: Path) -> None:
    out = tmp_path / "lat.csv"
    first = collect_latency_dataset(TINY, 3, out, seed=5, progress=False, **DATASET)
    lines = out.read_text().splitlines()
    assert len(first) == 3 and len(lines) == 4  # header + 3 rows

    out.write_text(out.read_text() + lines[-1][:25])  # a row cut short by a killed run
    second = collect_latency_dataset(TINY, 5, out, seed=5, progress=False, **DATASET)
    new_lines = out.read_text().splitlines()
    assert new_lines[:4] == lines  # the old rows are kept as they were, the cut row is dropped
    assert len(new_lines) == 6  # only 2 new rows
    assert [r.subnet for r in second[:3]] == [r.subnet for r in first]
    assert len({r.subnet for r in second}) == 5
    assert read_latency_csv(out) == second

    again = collect_latency_dataset(TINY, 5, out, seed=5, progress=False, **DATASET)
    assert again == second and out.read_text().splitlines() == new_lines  # nothing left to measure


def test_collector_refuses_to_mix_protocols(tmp_path: Path) -> None:
    out = tmp_path / "lat.csv"
    collect_latency_dataset(TINY, 1, out, progress=False, **DATASET)
    with pytest.raises(ValueError, match="beam"):
        collect_latency_dataset(TINY, 2, out, replace(FAST, beam=2), progress=False, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="clock"):
        collect_latency_dataset(TINY, 2, out, replace(FAST, clock="cpu"), progress=False, vocab_size=VOCAB)
    assert len(read_latency_csv(out)) == 1


@pytest.mark.parametrize("setting, value, message", [
    ("vocab_size", 30, "vocab_size 20 in the file, 30 now"),
    ("runs", 2, "runs 1 in the file, 2 now"),
    ("warmup", 1, "warmup 0 in the file, 1 now"),
])
def test_collector_refuses_to_resume_another_workload(tmp_path: Path, setting: str, value: int, message: str) -> None:
    out = tmp_path / "lat.csv"
    collect_latency_dataset(TINY, 1, out, progress=False, **DATASET)
    before = out.read_text()
    changed = {"vocab_size": value} if setting == "vocab_size" else {"protocol": replace(FAST, **{setting: value})}
    with pytest.raises(ValueError, match=message):
        collect_latency_dataset(TINY, 2, out, progress=False, **{**DATASET, **changed})
    assert out.read_text() == before
    assert read_latency_csv(out)[0].protocol[setting] == {"vocab_size": VOCAB, **FAST.recorded()}[setting]


def test_legacy_csv_reads_but_does_not_resume(tmp_path: Path) -> None:
    """A file without the vocab_size/warmup/runs columns (older version) reads, with those unknown."""
    out = tmp_path / "lat.csv"
    collect_latency_dataset(TINY, 1, out, progress=False, **DATASET)
    rows = [line.rsplit(",", 3)[0] for line in out.read_text().splitlines()]
    legacy = tmp_path / "legacy.csv"
    legacy.write_text("\n".join(rows) + "\n")
    (record,) = read_latency_csv(legacy)
    assert record.vocab_size is None and record.subnet == read_latency_csv(out)[0].subnet
    with pytest.raises(ValueError, match="vocab_size None in the file, 20 now"):
        collect_latency_dataset(TINY, 2, legacy, progress=False, **DATASET)


def test_read_latency_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_latency_csv(tmp_path / "missing.csv")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        read_latency_csv(other)
