"""Measured latency of ShiftAddNAS subnets on the user's own device (HAT's protocol, arXiv 2005.14187).

:func:`time_model` runs a :class:`~.protocol.TimingProtocol` on a model, as HAT measures it: batch 1, a
``src_len``-token source; the encoder is timed alone; the decoder runs autoregressively for ``tgt_len`` steps
with incremental state on ``beam`` rows, and each step does what fairseq's beam search does around the model:
log-softmax over the vocabulary, then reorder the incremental state and the encoder output by the selected
beams. ``warmup`` untimed runs, then ``runs`` timed ones; each reported time is the mean of the 10-90 % trimmed
runs (:func:`trimmed_mean`); ``total_ms = encoder_ms + decoder_ms``. On CUDA the device is synchronised before
reading each clock. :func:`time_models` compares models: alternating rounds, the median of each model's rounds.

:func:`measure_latency` builds the standalone subnet with random weights (weights do not change the work done)
and times it. Model code (fairseq) is imported inside the functions that build models: this module imports
without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Dict, List, Sequence

import torch
from torch import Tensor

from ..cost.workload import Workload
from ..space import SearchSpace, SubnetConfig, check
from .protocol import TimingProtocol

if TYPE_CHECKING:
    from ..models.subnet import ShiftAddTransformer

__all__ = [
    "DEFAULT_VOCAB_SIZE",
    "LatencyMeasurement",
    "trimmed_mean",
    "build_latency_model",
    "time_model",
    "time_models",
    "measure_latency",
]

DEFAULT_VOCAB_SIZE = Workload.vocab_size
"""The cost model's default dictionary (WMT14 En-De scale): the decoder's output projection is part of the cost."""


@dataclass(frozen=True)
class LatencyMeasurement:
    """Trimmed-mean latencies of one subnet, in milliseconds."""

    encoder_ms: float
    decoder_ms: float

    @property
    def total_ms(self) -> float:
        """``encoder_ms + decoder_ms``."""
        return self.encoder_ms + self.decoder_ms


def trimmed_mean(values: Sequence[float], low: float = 0.1, high: float = 0.9) -> float:
    """Mean of the sorted ``values[int(n * low) : int(n * high)]`` (HAT), at least one value kept.

    Example: ``trimmed_mean(range(10))`` averages 1..8 and gives 4.5.

    Raises:
        ValueError: no values, or not ``0 <= low < high <= 1``.
    """
    if not values:
        raise ValueError("trimmed_mean of no values")
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"low={low}, high={high}: need 0 <= low < high <= 1")
    ordered = sorted(values)
    start = int(len(ordered) * low)
    kept = ordered[start : max(int(len(ordered) * high), start + 1)]
    return sum(kept) / len(kept)


def build_latency_model(
    space: SearchSpace, sub: SubnetConfig, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> "ShiftAddTransformer":
    """The standalone ``sub`` with random weights over a joined dictionary of ``vocab_size`` entries, in eval mode.

    Raises:
        ValueError: ``vocab_size`` does not exceed the dictionary's special symbols.
    """
    from fairseq.data import Dictionary

    from ..models.subnet import ShiftAddTransformer, SubnetModelConfig

    dictionary = Dictionary()
    if vocab_size <= dictionary.nspecial:
        raise ValueError(f"vocab_size={vocab_size} must exceed the {dictionary.nspecial} special symbols")
    for i in range(vocab_size - dictionary.nspecial):
        dictionary.add_symbol(f"w{i}")
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    return ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name), task, space, sub).eval()


def _timed(fn: Callable[[], object], device: torch.device, clock: Callable[[], float]) -> float:
    """``clock`` time of ``fn()`` in ms (the device synchronised before both clock reads)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (clock() - start) * 1000.0


@torch.no_grad()
def time_model(model: "ShiftAddTransformer", protocol: TimingProtocol, seed: int = 0) -> LatencyMeasurement:
    """Time ``model`` (moved to the protocol's device, eval mode) under ``protocol`` (the module docstring).

    Tokens are random non-special symbols drawn with ``seed`` (the source ends with EOS, the target starts
    with it); the beam selection of each step is a fixed random permutation within the sentence's ``beam`` rows.

    Raises:
        ValueError: ``protocol.clock`` cannot time this run now (:meth:`~.protocol.TimingProtocol.check_clock`).
    """
    protocol.check_clock()
    dev = protocol.torch_device
    src_len, tgt_len, beam = protocol.src_len, protocol.tgt_len, protocol.beam
    model = model.to(dev).eval()
    dictionary = model.encoder.dictionary
    g = torch.Generator().manual_seed(seed)
    words = (dictionary.nspecial, len(dictionary))
    src = torch.randint(*words, (1, src_len), generator=g)
    src[0, -1] = dictionary.eos()
    prev = torch.randint(*words, (beam, tgt_len), generator=g)
    prev[:, 0] = dictionary.eos()
    orders = [torch.randperm(beam, generator=g) for _ in range(tgt_len)]
    src, prev = src.to(dev), prev.to(dev)
    src_lengths = torch.tensor([src_len], device=dev)
    orders = [o.to(dev) for o in orders]

    def encode() -> Dict[str, List[Tensor]]:
        return model.encoder(src, src_lengths=src_lengths)

    encoder_out = model.encoder.reorder_encoder_out(encode(), torch.zeros(beam, dtype=torch.long, device=dev))

    def decode() -> None:
        state: Dict[str, Dict[str, Tensor]] = {}
        enc = encoder_out
        for t, order in enumerate(orders):
            logits, _ = model.decoder(prev[:, : t + 1], encoder_out=enc, incremental_state=state)
            torch.log_softmax(logits[:, -1], dim=-1)
            model.decoder.reorder_incremental_state_scripting(state, order)
            enc = model.encoder.reorder_encoder_out(enc, order)

    times = {}
    for name, fn in (("encoder", encode), ("decoder", decode)):
        for _ in range(protocol.warmup):
            fn()
        times[name] = trimmed_mean([_timed(fn, dev, protocol.read_clock) for _ in range(protocol.runs)])
    return LatencyMeasurement(encoder_ms=times["encoder"], decoder_ms=times["decoder"])


def time_models(models: Sequence["ShiftAddTransformer"], protocol: TimingProtocol, rounds: int) -> List[float]:
    """``total_ms`` of each model under ``protocol``, timed in ``rounds`` alternating rounds (each round times every
    model once, in order) and taken as the median of its rounds: a drift of the machine during the measurement
    (the allocator's state, the clock, neighbours) falls on every model alike, so their ratios stay comparable."""
    times = [[time_model(model, protocol).total_ms for model in models] for _ in range(rounds)]
    return [median(round_times[i] for round_times in times) for i in range(len(models))]


def measure_latency(
    space: SearchSpace, sub: SubnetConfig, protocol: TimingProtocol, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> LatencyMeasurement:
    """Latency of ``sub`` (standalone, random weights, ``vocab_size`` entries) under ``protocol``: see
    :func:`time_model`.

    Raises:
        ValueError: ``sub`` is not in ``space``, ``vocab_size`` is too small, or the clock cannot time this run.
    """
    check(space, sub)
    protocol.check_clock()  # before building the model
    return time_model(build_latency_model(space, sub, vocab_size), protocol)
