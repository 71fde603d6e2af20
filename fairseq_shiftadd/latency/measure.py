"""Measured latency of ShiftAddNAS subnets on the user's own device (HAT's protocol, arXiv 2005.14187).

Protocol (:func:`time_model`), as HAT measures it: batch 1, a ``src_len``-token source; the encoder is timed
alone; the decoder runs autoregressively for ``tgt_len`` steps with incremental state on ``beam`` rows, and
each step does what fairseq's beam search does around the model: log-softmax over the vocabulary, then
reorder the incremental state and the encoder output by the selected beams. ``warmup`` untimed runs, then
``runs`` timed ones; each reported time is the mean of the 10-90 % trimmed runs (:func:`trimmed_mean`);
``total_ms = encoder_ms + decoder_ms``. On CUDA the device is synchronised before reading each clock.

Clocks (:data:`CLOCKS`): ``"wall"`` (HAT's, the default) is the latency a user sees. ``"cpu"`` is the CPU time of
the measuring thread (CPU device, one torch thread only): on a shared, oversubscribed machine it leaves out the
time spent waiting for a core, which otherwise dominates wall-clock numbers; it is not a latency on a busy machine.

:func:`measure_latency` builds the standalone subnet with random weights (weights do not change the
work done) and times it; :func:`collect_latency_dataset` measures sampled subnets into a CSV, one row per
subnet, resuming a killed run. Every row records how it was measured (:attr:`LatencyRecord.protocol`: space,
device, lengths, beam, clock, dictionary size, warm-ups and runs), and a resume with any other setting is
refused with the differences, so one file never mixes workloads. :func:`read_latency_csv` reads it back (for
:mod:`.predictor`); files written before ``vocab_size``, ``warmup`` and ``runs`` were recorded still read,
with those settings unknown (``None``), and are not resumed.

Model code (fairseq) is imported inside the functions that build models: this module imports without it.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from ..cli_errors import InputError
from ..space import SearchSpace, SubnetConfig, check, sample
from ..cost.workload import Workload

if TYPE_CHECKING:
    from ..models.subnet import ShiftAddTransformer

__all__ = [
    "LatencyMeasurement",
    "LatencyRecord",
    "CSV_FIELDS",
    "CLOCKS",
    "trimmed_mean",
    "device_description",
    "build_latency_model",
    "time_model",
    "measure_latency",
    "read_latency_csv",
    "collect_latency_dataset",
]

# The cost model's default dictionary (WMT14 En-De scale): the decoder's output projection is part of the cost.
DEFAULT_VOCAB_SIZE = Workload().vocab_size


@dataclass(frozen=True)
class LatencyMeasurement:
    """Trimmed-mean latencies of one subnet, in milliseconds."""

    encoder_ms: float
    decoder_ms: float

    @property
    def total_ms(self) -> float:
        """``encoder_ms + decoder_ms``."""
        return self.encoder_ms + self.decoder_ms


@dataclass(frozen=True)
class LatencyRecord:
    """One row of a latency dataset: the subnet, its measurement and how it was measured."""

    space: str
    subnet: SubnetConfig
    measurement: LatencyMeasurement
    device: str
    src_len: int
    tgt_len: int
    beam: int
    clock: str = "wall"
    vocab_size: Optional[int] = None
    warmup: Optional[int] = None
    runs: Optional[int] = None

    def to_row(self) -> Dict[str, str]:
        m = self.measurement
        return {
            "space": self.space,
            "subnet": self.subnet.to_json(),
            "encoder_ms": repr(m.encoder_ms),  # repr: read back exactly
            "decoder_ms": repr(m.decoder_ms),
            "total_ms": repr(m.total_ms),
            "device": self.device,
            "src_len": str(self.src_len),
            "tgt_len": str(self.tgt_len),
            "beam": str(self.beam),
            "clock": self.clock,
            **{name: "" if getattr(self, name) is None else str(getattr(self, name)) for name in _COUNTED},
        }

    @classmethod
    def from_row(cls, row: Dict[str, str]) -> "LatencyRecord":
        return cls(
            space=row["space"],
            subnet=SubnetConfig.from_json(row["subnet"]),
            measurement=LatencyMeasurement(float(row["encoder_ms"]), float(row["decoder_ms"])),
            device=row["device"],
            src_len=int(row["src_len"]),
            tgt_len=int(row["tgt_len"]),
            beam=int(row["beam"]),
            clock=row["clock"],
            **{name: int(row[name]) if row.get(name) else None for name in _COUNTED},
        )

    @property
    def protocol(self) -> Dict[str, object]:
        """How the row was measured: what must agree between rows of one dataset (its fingerprint)."""
        return {"space": self.space, "device": self.device, "src_len": self.src_len, "tgt_len": self.tgt_len,
                "beam": self.beam, "clock": self.clock, "vocab_size": self.vocab_size, "warmup": self.warmup,
                "runs": self.runs}


_COUNTED = ("vocab_size", "warmup", "runs")

_LEGACY_FIELDS = (
    "space", "subnet", "encoder_ms", "decoder_ms", "total_ms", "device", "src_len", "tgt_len", "beam", "clock"
)
CSV_FIELDS = _LEGACY_FIELDS + _COUNTED
"""Columns of a latency dataset CSV (``subnet`` is the :class:`SubnetConfig` JSON; times in ms)."""


def trimmed_mean(values: Sequence[float], low: float = 0.1, high: float = 0.9) -> float:
    """Mean of the sorted ``values[int(n * low) : int(n * high)]`` (HAT), at least one value kept.

    Example: ``trimmed_mean(range(10))`` averages 1..8 and gives 4.5.
    """
    if not values:
        raise ValueError("trimmed_mean of no values")
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"low={low}, high={high}: need 0 <= low < high <= 1")
    ordered = sorted(values)
    start = int(len(ordered) * low)
    kept = ordered[start : max(int(len(ordered) * high), start + 1)]
    return sum(kept) / len(kept)


def _device(device: Union[str, torch.device]) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={str(device)!r} not supported: use 'cpu' or 'cuda[:index]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but CUDA is not available")
    return dev


def device_description(device: Union[str, torch.device]) -> str:
    """What the latency was measured on: GPU name, or CPU model and the number of torch threads."""
    dev = _device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"cpu:{model} ({torch.get_num_threads()} threads)"


def build_latency_model(
    space: SearchSpace, sub: SubnetConfig, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> "ShiftAddTransformer":
    """The standalone ``sub`` with random weights over a joined dictionary of ``vocab_size`` entries, in eval mode."""
    from fairseq.data import Dictionary

    from ..models.subnet import ShiftAddTransformer, SubnetModelConfig

    dictionary = Dictionary()
    if vocab_size <= dictionary.nspecial:
        raise ValueError(f"vocab_size={vocab_size} must exceed the {dictionary.nspecial} special symbols")
    for i in range(vocab_size - dictionary.nspecial):
        dictionary.add_symbol(f"w{i}")
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    return ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name), task, space, sub).eval()


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""Clock name -> seconds counter (see the module docstring)."""


def _check_protocol(device: Union[str, torch.device], clock: str, **counts: int) -> torch.device:
    """The torch device; ``ValueError`` for an unsupported device or clock, or a count below its minimum."""
    for name, value in counts.items():
        least = 0 if name == "warmup" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name}={value!r} must be an int >= {least}")
    dev = _device(device)
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r} not in allowed values {tuple(CLOCKS)}")
    if clock == "cpu" and (dev.type != "cpu" or torch.get_num_threads() != 1):
        raise ValueError(
            f"clock='cpu' times one CPU thread: it needs device='cpu' and torch.set_num_threads(1) "
            f"(got device={str(device)!r}, {torch.get_num_threads()} threads)"
        )
    return dev


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
def time_model(
    model: "ShiftAddTransformer",
    *,
    device: Union[str, torch.device] = "cpu",
    src_len: int = 30,
    tgt_len: int = 30,
    beam: int = 1,
    warmup: int = 5,
    runs: int = 20,
    clock: str = "wall",
    seed: int = 0,
) -> LatencyMeasurement:
    """Time ``model`` (moved to ``device``, eval mode) with the protocol of the module docstring.

    Tokens are random non-special symbols (the source ends with EOS, the target starts with it); the beam
    selection of each step is a fixed random permutation within the sentence's ``beam`` rows.
    """
    dev = _check_protocol(device, clock, src_len=src_len, tgt_len=tgt_len, beam=beam, warmup=warmup, runs=runs)
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
        for _ in range(warmup):
            fn()
        times[name] = trimmed_mean([_timed(fn, dev, CLOCKS[clock]) for _ in range(runs)])
    return LatencyMeasurement(encoder_ms=times["encoder"], decoder_ms=times["decoder"])


def measure_latency(
    space: SearchSpace,
    sub: SubnetConfig,
    *,
    device: Union[str, torch.device] = "cpu",
    src_len: int = 30,
    tgt_len: int = 30,
    beam: int = 1,
    warmup: int = 5,
    runs: int = 20,
    clock: str = "wall",
    vocab_size: int = DEFAULT_VOCAB_SIZE,
) -> LatencyMeasurement:
    """Latency of ``sub`` (standalone, random weights, ``vocab_size`` entries) on ``device``: see :func:`time_model`.

    Raises:
        ValueError: ``sub`` is not in ``space``, or an argument is out of range.
    """
    check(space, sub)
    _check_protocol(device, clock, src_len=src_len, tgt_len=tgt_len, beam=beam, warmup=warmup, runs=runs)
    model = build_latency_model(space, sub, vocab_size)
    return time_model(
        model, device=device, src_len=src_len, tgt_len=tgt_len, beam=beam, warmup=warmup, runs=runs, clock=clock
    )


def read_latency_csv(path: Union[str, Path]) -> List[LatencyRecord]:
    """The records of a dataset written by :func:`collect_latency_dataset`.

    A last line cut short by a killed run (no final newline) is ignored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the header is not :data:`CSV_FIELDS` or a row does not parse (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latency dataset not found: {path}")
    text = path.read_text(encoding="utf-8")
    text = text[: text.rfind("\n") + 1]  # drop a last line cut short
    if not text:
        return []
    reader = csv.DictReader(text.splitlines(keepends=True))
    if tuple(reader.fieldnames or ()) not in (CSV_FIELDS, _LEGACY_FIELDS):
        raise ValueError(f"{path}: header {reader.fieldnames} is not the latency dataset's {list(CSV_FIELDS)}")
    records = []
    for row in reader:
        try:
            records.append(LatencyRecord.from_row(row))
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}:{reader.line_num}: bad row: {err}") from None
    return records


def _drop_partial_line(path: Path) -> None:
    """Cut a last line without newline (a killed write) so that appends start on a fresh line."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _distinct_samples(space: SearchSpace, n: int, seed: int) -> List[SubnetConfig]:
    """The first ``n`` distinct subnets drawn by ``sample(space, random.Random(seed))``."""
    rng = random.Random(seed)
    subs: Dict[SubnetConfig, None] = {}
    draws = 0
    while len(subs) < n:
        subs.setdefault(sample(space, rng))
        draws += 1
        if draws > 100 * n + 1000:
            raise ValueError(f"space {space.name!r} has fewer than n={n} distinct subnets")
    return list(subs)


def collect_latency_dataset(
    space: SearchSpace,
    n: int,
    out_csv: Union[str, Path],
    device: Union[str, torch.device] = "cpu",
    seed: int = 0,
    *,
    src_len: int = 30,
    tgt_len: int = 30,
    beam: int = 1,
    warmup: int = 5,
    runs: int = 20,
    clock: str = "wall",
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    progress: bool = True,
) -> List[LatencyRecord]:
    """Measure the first ``n`` distinct subnets sampled from ``random.Random(seed)`` into ``out_csv``.

    One row (:data:`CSV_FIELDS`) is appended and flushed per subnet, so a killed run resumes: subnets
    already in the file are skipped. Returns every record of the file afterwards.

    Raises:
        InputError: the file holds rows measured otherwise (another space, device, length, beam, clock,
            dictionary size, warm-up or run count: they would not be comparable), naming the differences.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive int")
    from ..progress import progress as progress_bar

    _check_protocol(device, clock, src_len=src_len, tgt_len=tgt_len, beam=beam, warmup=warmup, runs=runs)
    out_csv = Path(out_csv)
    protocol = {"space": space.name, "device": device_description(device), "src_len": src_len, "tgt_len": tgt_len,
                "beam": beam, "clock": clock, "vocab_size": vocab_size, "warmup": warmup, "runs": runs}
    existing = read_latency_csv(out_csv) if out_csv.is_file() else []
    for record in existing:
        if record.protocol != protocol:
            diff = "; ".join(f"{key} {record.protocol[key]!r} in the file, {value!r} now"
                             for key, value in protocol.items() if record.protocol[key] != value)
            raise InputError(f"{out_csv} was measured with other settings ({diff}): resume with the same "
                             "settings or write to another --out")
    done = {record.subnet for record in existing}
    todo = [sub for sub in _distinct_samples(space, n, seed) if sub not in done]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    if existing:
        _drop_partial_line(out_csv)
    new_file = not existing
    with open(out_csv, "w" if new_file else "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new_file:
            writer.writeheader()
        for sub in progress_bar(todo, desc=f"latency {space.name} on {protocol['device']}", enabled=progress):
            m = measure_latency(space, sub, device=device, src_len=src_len, tgt_len=tgt_len, beam=beam,
                                warmup=warmup, runs=runs, clock=clock, vocab_size=vocab_size)
            record = LatencyRecord(subnet=sub, measurement=m, **protocol)  # type: ignore[arg-type]
            writer.writerow(record.to_row())
            f.flush()
            os.fsync(f.fileno())
            existing.append(record)
    return existing
