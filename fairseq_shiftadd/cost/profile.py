"""Hardware profiles: unit energies per operation and bit width, per-access memory costs, an accelerator.

A profile is a YAML file (``fairseq_shiftadd/cost/profiles/<name>.yaml`` for the shipped ones)::

    name: 45nm
    compute:                      # pJ per operation, by bit width (every op lists the same widths)
      mult: {32: 3.7, 8: 0.2}
      add: {32: 0.9, 8: 0.03}
      shift: {32: 0.13, 8: 0.024}
    memory:                       # pJ per 16-bit access; an access of b bits costs b / 16 of it
      dram: 200.0
      global_buffer: 22.2
      noc: 7.4
      rf: 3.7
    accelerator:                  # for the analytical latency (see .analytical)
      pe_rows: 16
      pe_cols: 12
      clock_mhz: 250.0
      cycles_per_term: {mult: 1.0, shift: 1.0, add: 1.0}
      dram_bandwidth_gb_per_s: 12.8

``description`` is optional. :func:`load_profile` validates everything and raises ``ValueError`` naming the
file and the key (``45nm.yaml: compute.mult.32: energy must be a non-negative number, got -1``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple, Union

import yaml

from ..ops.kinds import OpKind
from ..ops.validate import int_range_text, is_int, is_number
from .parts import LEVELS
from .workload import BIT_WIDTHS

__all__ = ["PROFILE_DIR", "AcceleratorProfile", "HardwareProfile", "shipped_profiles", "load_profile"]

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
"""Where the shipped profiles live (packaged with the module)."""

_TOP_KEYS = ("name", "compute", "memory", "accelerator")
_ACCELERATOR_KEYS = ("pe_rows", "pe_cols", "clock_mhz", "cycles_per_term", "dram_bandwidth_gb_per_s")


@dataclass(frozen=True)
class AcceleratorProfile:
    """A PE array for the analytical latency.

    Args:
        pe_rows, pe_cols: the array's shape (``pe_rows * pe_cols`` PEs, each one term per ``cycles_per_term``).
        clock_mhz: clock frequency.
        cycles_per_term: cycles one PE spends on one dot-product term (operation and accumulation), by op.
        dram_bandwidth_gb_per_s: off-chip bandwidth (GB = 1e9 bytes).
    """

    pe_rows: int
    pe_cols: int
    clock_mhz: float
    cycles_per_term: Mapping[OpKind, float]
    dram_bandwidth_gb_per_s: float

    @property
    def num_pes(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def dram_bits_per_cycle(self) -> float:
        return self.dram_bandwidth_gb_per_s * 8e9 / (self.clock_mhz * 1e6)


@dataclass(frozen=True)
class HardwareProfile:
    """Unit costs of one technology; build with :meth:`from_dict` or :func:`load_profile`.

    Args:
        name: the profile's name.
        compute_pj: pJ per operation, ``{(op, bits): pJ}``.
        memory_pj_per_16bit: pJ per 16-bit access of each level of :data:`~.parts.LEVELS`.
        accelerator: the PE array of the analytical latency.
        description: free text.
        source: the file it was read from (``"<dict>"`` otherwise).
    """

    name: str
    compute_pj: Mapping[Tuple[OpKind, int], float]
    memory_pj_per_16bit: Mapping[str, float]
    accelerator: AcceleratorProfile
    description: str = ""
    source: str = "<dict>"

    @property
    def bit_widths(self) -> Tuple[int, ...]:
        """The operand widths this profile has unit energies for."""
        return tuple(sorted({bits for _, bits in self.compute_pj}, reverse=True))

    def memory_pj_per_bit(self, level: str) -> float:
        return self.memory_pj_per_16bit[level] / 16.0

    def check_bits(self, bits: int) -> None:
        """``ValueError`` unless the profile has unit energies at ``bits``."""
        if bits not in self.bit_widths:
            raise ValueError(f"bits={bits} not in profile {self.name!r}'s widths {self.bit_widths} ({self.source})")

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "HardwareProfile":
        """Validate plain data (as loaded from YAML) into a profile.

        Raises:
            ValueError: ``"<source>: <key path>: <problem>"`` for a missing or unknown key, a negative, non-finite
                or non-numeric energy, an unknown op, level or bit width, or ops listing different widths.
        """
        where = _Where(source)
        top = where.mapping(data, "", _TOP_KEYS, optional=("description",))
        name = top["name"]
        if not isinstance(name, str) or not name:
            raise where.error("name", f"must be a non-empty string, got {name!r}")
        description = top.get("description", "")
        if not isinstance(description, str):
            raise where.error("description", f"must be a string, got {description!r}")
        compute = where.mapping(top["compute"], "compute", tuple(op.value for op in OpKind))
        compute_pj: Dict[Tuple[OpKind, int], float] = {}
        widths: Dict[str, Tuple[int, ...]] = {}
        for op_name, table in compute.items():
            path = f"compute.{op_name}"
            if not isinstance(table, Mapping) or not table:
                raise where.error(path, f"must be a non-empty mapping of bit width to pJ, got {table!r}")
            widths[op_name] = tuple(sorted(where.bits(bits, f"{path}.{bits}") for bits in table))
            for bits, energy in table.items():
                key = (OpKind(op_name), where.bits(bits, f"{path}.{bits}"))
                compute_pj[key] = where.energy(energy, f"{path}.{bits}")
        every_width = set().union(*widths.values())
        for op_name, op_widths in widths.items():
            missing = sorted(every_width - set(op_widths), reverse=True)
            if missing:
                raise where.error(
                    f"compute.{op_name}", f"lists bit widths {op_widths} but not {tuple(missing)}, which other ops list"
                )
        memory = where.mapping(top["memory"], "memory", LEVELS)
        memory_pj = {level: where.energy(memory[level], f"memory.{level}") for level in LEVELS}
        acc = where.mapping(top["accelerator"], "accelerator", _ACCELERATOR_KEYS)
        cycles = where.mapping(acc["cycles_per_term"], "accelerator.cycles_per_term", tuple(op.value for op in OpKind))
        accelerator = AcceleratorProfile(
            pe_rows=where.positive_int(acc["pe_rows"], "accelerator.pe_rows"),
            pe_cols=where.positive_int(acc["pe_cols"], "accelerator.pe_cols"),
            clock_mhz=where.positive(acc["clock_mhz"], "accelerator.clock_mhz"),
            cycles_per_term={
                OpKind(op): where.positive(value, f"accelerator.cycles_per_term.{op}") for op, value in cycles.items()
            },
            dram_bandwidth_gb_per_s=where.positive(
                acc["dram_bandwidth_gb_per_s"], "accelerator.dram_bandwidth_gb_per_s"
            ),
        )
        return cls(name, compute_pj, memory_pj, accelerator, description, source)


class _Where:
    """Error messages that name the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, problem: str) -> ValueError:
        return ValueError(f"{self.source}: {path or '<top level>'}: {problem}")

    def mapping(
        self, value: Any, path: str, required: Tuple[str, ...], optional: Tuple[str, ...] = ()
    ) -> Dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a mapping, got {type(value).__name__}")
        keys = [str(k) for k in value]
        allowed = required + optional
        for key in keys:
            if key not in allowed:
                raise self.error(_join(path, key), f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in keys:
                raise self.error(_join(path, key), "missing key")
        return {str(k): v for k, v in value.items()}

    def bits(self, value: Any, path: str) -> int:
        bits = value
        if isinstance(value, str) and value.strip().isdigit():
            bits = int(value)
        if not is_int(bits) or bits not in BIT_WIDTHS:
            raise self.error(path, f"unknown bit width {value!r} (allowed: {', '.join(map(str, BIT_WIDTHS))})")
        return bits

    def _number(self, value: Any, path: str, what: str) -> float:
        if not is_number(value) or not math.isfinite(value):
            raise self.error(path, f"{what} must be a finite number, got {value!r}")
        return float(value)

    def energy(self, value: Any, path: str) -> float:
        energy = self._number(value, path, "energy")
        if energy < 0:
            raise self.error(path, f"energy must be a non-negative number, got {value!r}")
        return energy

    def positive(self, value: Any, path: str) -> float:
        number = self._number(value, path, "value")
        if number <= 0:
            raise self.error(path, f"must be positive, got {value!r}")
        return number

    def positive_int(self, value: Any, path: str) -> int:
        if not is_int(value) or value < 1:
            raise self.error(path, f"must be {int_range_text(1)}, got {value!r}")
        return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def shipped_profiles() -> Tuple[str, ...]:
    """Names of the profiles shipped in :data:`PROFILE_DIR`."""
    return tuple(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))


def load_profile(profile: Union[str, Path, HardwareProfile]) -> HardwareProfile:
    """A shipped profile by name, a YAML file by path, or ``profile`` itself if it is a :class:`HardwareProfile`.

    Raises:
        ValueError: an unknown name (listing the shipped ones), a missing file, invalid YAML, or an invalid
            profile (see :meth:`HardwareProfile.from_dict`).
    """
    if isinstance(profile, HardwareProfile):
        return profile
    text = str(profile)
    if text in shipped_profiles():
        path = PROFILE_DIR / f"{text}.yaml"
    elif text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"profile file {text!r} not found")
    else:
        raise ValueError(f"profile={text!r} is neither a shipped profile {shipped_profiles()} nor a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from None
    return HardwareProfile.from_dict(data, source=str(path))
