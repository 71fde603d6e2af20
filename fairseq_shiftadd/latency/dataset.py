"""Latency datasets: measured subnets in a resumable CSV, one row per subnet (for :mod:`.predictor`).

:func:`collect_latency_dataset` measures sampled subnets into a CSV, one row per subnet, resuming a killed run.
Every row records how it was measured (:attr:`LatencyRecord.protocol`: the space, the
:class:`~.protocol.TimingProtocol`'s settings with the device described, and the dictionary size), and a resume
with any other setting is refused with the differences, so one file never mixes workloads.
:func:`read_latency_csv` reads it back; files written before ``vocab_size``, ``warmup`` and ``runs`` were
recorded still read, with those settings unknown (``None``), and are not resumed.
"""
from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

from ..cli_errors import InputError
from ..space import SearchSpace, SubnetConfig, sample
from .measure import DEFAULT_VOCAB_SIZE, LatencyMeasurement, measure_latency
from .protocol import TimingProtocol

__all__ = ["LatencyRecord", "CSV_FIELDS", "read_latency_csv", "collect_latency_dataset"]


@dataclass(frozen=True)
class LatencyRecord:
    """One row of a latency dataset: the subnet, its measurement and how it was measured.

    The fields after ``measurement`` are the :class:`~.protocol.TimingProtocol`'s (``device`` described, as
    :meth:`~.protocol.TimingProtocol.recorded` gives it) and the dictionary size; ``None``: unknown (an
    older file).
    """

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
        return {"space": self.space, **{name: getattr(self, name) for name in TimingProtocol.field_names()},
                "vocab_size": self.vocab_size}


_COUNTED = ("vocab_size", "warmup", "runs")
"""Columns an older file lacks (read as ``None``)."""

_LEGACY_FIELDS = (
    "space", "subnet", "encoder_ms", "decoder_ms", "total_ms", "device", "src_len", "tgt_len", "beam", "clock"
)
CSV_FIELDS = _LEGACY_FIELDS + _COUNTED
"""Columns of a latency dataset CSV (``subnet`` is the :class:`SubnetConfig` JSON; times in ms)."""


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
    protocol: TimingProtocol,
    seed: int = 0,
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    progress: bool = True,
) -> List[LatencyRecord]:
    """Measure the first ``n`` distinct subnets sampled from ``random.Random(seed)`` into ``out_csv`` under
    ``protocol``.

    One row (:data:`CSV_FIELDS`) is appended and flushed per subnet, so a killed run resumes: subnets
    already in the file are skipped. Returns every record of the file afterwards.

    Raises:
        ValueError: ``n`` is not a positive int, or the space has fewer than ``n`` distinct subnets.
        InputError: the file holds rows measured otherwise (another space, any other
            :class:`~.protocol.TimingProtocol` setting or dictionary size: they would not be comparable),
            naming the differences.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive int")
    from ..progress import progress as progress_bar

    protocol.check_clock()
    out_csv = Path(out_csv)
    settings = {"space": space.name, **protocol.recorded(), "vocab_size": vocab_size}
    existing = read_latency_csv(out_csv) if out_csv.is_file() else []
    for record in existing:
        if record.protocol != settings:
            diff = "; ".join(f"{key} {record.protocol[key]!r} in the file, {value!r} now"
                             for key, value in settings.items() if record.protocol[key] != value)
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
        for sub in progress_bar(todo, desc=f"latency {space.name} on {settings['device']}", enabled=progress):
            m = measure_latency(space, sub, protocol, vocab_size)
            record = LatencyRecord(subnet=sub, measurement=m, **settings)  # type: ignore[arg-type]
            writer.writerow(record.to_row())
            f.flush()
            os.fsync(f.fileno())
            existing.append(record)
    return existing
