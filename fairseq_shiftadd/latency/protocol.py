"""How a latency is measured: :class:`TimingProtocol`, one frozen value passed to every function that times.

HAT's protocol (arXiv 2005.14187), run by :func:`~.measure.time_model`: batch 1, a ``src_len``-token source;
the encoder is timed alone; the decoder runs autoregressively for ``tgt_len`` steps on ``beam`` rows.
``warmup`` untimed runs, then ``runs`` timed ones, read on ``clock``, on ``device``.

Clocks (:data:`CLOCKS`): ``"wall"`` (HAT's, the default) is the latency a user sees. ``"cpu"`` is the CPU time
of the measuring thread (CPU device, one torch thread only): on a shared, oversubscribed machine it leaves
out the time spent waiting for a core, which otherwise dominates wall-clock numbers; it is not a latency on a
busy machine.

No fairseq needed.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable, Dict, Tuple, Union

import torch

from ..cost.workload import Workload

__all__ = ["CLOCKS", "TimingProtocol"]

CLOCKS: Dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
"""Clock name -> seconds counter (see the module docstring)."""

_LEAST = {"src_len": 1, "tgt_len": 1, "beam": 1, "warmup": 0, "runs": 1}
"""The smallest allowed value of each count of :class:`TimingProtocol`."""


@dataclass(frozen=True)
class TimingProtocol:
    """The settings of one latency measurement (module docstring); validated on construction.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (a ``torch.device`` is accepted and stored as its string).
        src_len: source tokens.
        tgt_len: decoder steps.
        beam: decoder rows (the beam).
        warmup: untimed runs before the timed ones.
        runs: timed runs; each reported time is their 10-90 % trimmed mean.
        clock: a key of :data:`CLOCKS`.

    Raises:
        ValueError: one line naming the field: a count below its minimum or not an int, an unsupported or
            unavailable device, an unknown clock, or ``clock="cpu"`` off the CPU or with more than one torch
            thread (:meth:`check_clock`).
    """

    device: str = "cpu"
    src_len: int = 30
    tgt_len: int = 30
    beam: int = 1
    warmup: int = 5
    runs: int = 20
    clock: str = "wall"

    def __post_init__(self) -> None:
        for name, least in _LEAST.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name}={value!r} must be an int >= {least}")
        object.__setattr__(self, "device", str(_torch_device(self.device)))
        if self.clock not in CLOCKS:
            raise ValueError(f"clock={self.clock!r} not in allowed values {tuple(CLOCKS)}")
        self.check_clock()

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        """The settings, in order: also the ``argparse`` destinations of the latency CLI and CSV columns."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def for_workload(cls, workload: Workload, device: Union[str, torch.device] = "cpu") -> "TimingProtocol":
        """The protocol that times ``workload``'s sentence (its lengths and beam) on ``device``, other settings
        default."""
        return cls(device=str(device), src_len=workload.src_len, tgt_len=workload.tgt_len, beam=workload.beam)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def read_clock(self) -> Callable[[], float]:
        """The seconds counter of :attr:`clock`."""
        return CLOCKS[self.clock]

    def check_clock(self) -> None:
        """``ValueError`` unless the clock can time this run now: ``"cpu"`` times one CPU thread only.

        Checked on construction and again before timing (the torch thread count may have changed in between).
        """
        if self.clock == "cpu" and (self.torch_device.type != "cpu" or torch.get_num_threads() != 1):
            raise ValueError(
                f"clock='cpu' times one CPU thread: it needs device='cpu' and torch.set_num_threads(1) "
                f"(got device={self.device!r}, {torch.get_num_threads()} threads)"
            )

    def device_description(self) -> str:
        """What the latency is measured on: the GPU's name, or the CPU model and the number of torch threads."""
        dev = self.torch_device
        if dev.type == "cuda":
            return f"cuda:{torch.cuda.get_device_name(dev)}"
        model = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
        except OSError:
            pass
        return f"cpu:{model} ({torch.get_num_threads()} threads)"

    def recorded(self) -> Dict[str, object]:
        """The settings as a dataset row records them: every field, the device described
        (:meth:`device_description`)."""
        return {**asdict(self), "device": self.device_description()}


def _torch_device(device: Union[str, torch.device]) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={str(device)!r} not supported: use 'cpu' or 'cuda[:index]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but CUDA is not available")
    return dev
