"""The search's costed sentence (search/metrics.py): accounting, the decoding beam, the supernet's quant_bits."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from fairseq_shiftadd.cost import Workload
from fairseq_shiftadd.search.metrics import COST_OPTIONS, search_workload

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _parse(*argv: str):
    from fairseq import options

    from fairseq_shiftadd.search.cli import get_parser

    return options.parse_args_and_arch(get_parser(), ["DATA", "--path", "x.pt", *argv])


def test_defaults_follow_the_decoding_beam_and_the_supernets_bits():
    args = _parse("--beam", "4")
    assert search_workload(args, 8008) == Workload(beam=4, vocab_size=8008)
    assert search_workload(args, 8008, quant_bits=8).bits == 8
    assert search_workload(_parse(), 100).beam == 5  # fairseq's default --beam
    original = search_workload(_parse("--beam", "4", "--cost-accounting", "original"), 100)
    assert (original.accounting, original.beam) == ("original", 1)
    explicit = search_workload(_parse("--cost-beam", "2", "--cost-bits", "32"), 100, quant_bits=8)
    assert (explicit.beam, explicit.bits) == (2, 32)
    for dest in COST_OPTIONS:
        assert hasattr(args, dest), dest


def test_bad_cost_options_give_one_line():
    with pytest.raises(ValueError, match="--cost-\\* options: Workload.beam=4: the original accounting"):
        search_workload(_parse("--cost-accounting", "original", "--cost-beam", "4"))
    with pytest.raises(ValueError, match="--cost-\\* options: Workload.bits=12"):
        search_workload(_parse("--cost-bits", "12"))


def _flags(path: Path):
    lines = [l for l in path.read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    return shlex.split(" ".join(lines))


@pytest.mark.parametrize("dataset", ["wmt14_en_de", "wmt14_en_fr", "iwslt14_de_en", "multi30k_en_de"])
def test_recipes_cost_the_search_at_the_beam_they_decode_with(dataset):
    """Streaming: the decoding beam; the original accounting (one teacher-forced pass, the demo's) has beam 1."""
    search = _parse(*_flags(EXAMPLES / dataset / "search.args"))
    generate = _flags(EXAMPLES / dataset / "generate.args")
    assert int(search.beam) == int(generate[generate.index("--beam") + 1])
    workload = search_workload(search)
    assert workload.beam == (1 if workload.accounting == "original" else int(search.beam))


def test_measured_latency_is_timed_on_the_costed_sentence(monkeypatch: pytest.MonkeyPatch, one_thread) -> None:
    """``measured_latency_ms`` times the costed sentence's lengths and beam with the dictionary's size."""
    from fairseq_shiftadd.latency import TimingProtocol, measure
    from fairseq_shiftadd.search.metrics import MEASURED, cost_metrics
    from fairseq_shiftadd.space import get_space, smallest

    calls = []
    real = measure.measure_latency

    def recording(space, sub, protocol, vocab_size):
        calls.append((protocol, vocab_size))
        return real(space, sub, protocol, vocab_size)

    monkeypatch.setattr(measure, "measure_latency", recording)
    tiny = get_space("tiny")
    workload = Workload(src_len=4, tgt_len=3, beam=2, vocab_size=24)
    *_, measured = cost_metrics(tiny, ["energy_mj", MEASURED], workload=workload)
    assert measured(smallest(tiny))[MEASURED] > 0
    assert calls == [(TimingProtocol(src_len=4, tgt_len=3, beam=2), 24)]
