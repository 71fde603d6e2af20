"""The comment header of a subnet file: ``# KEY: {JSON}`` lines above the YAML body, and the space record.

The search writes its best subnets (``best.yaml``, ``front/NN.yaml``) as :class:`~.configs.SubnetConfig` YAML
under comment lines (YAML ignores them: the file stays a plain ``--subnet FILE``). Two of those lines are records
that other commands read back; this module owns their line format (:func:`header_line`, :func:`read_header`):

* ``# cost_workload: {...}``: the workload and hardware profile of the recorded metrics
  (:func:`~fairseq_shiftadd.cost.workload_header`, its owner);
* ``# search_space: {...}``: the space the subnet was searched in (:class:`SpaceRecord`): its name, its block
  details (:data:`~.configs.BLOCK_DETAILS`, preset and overrides) and its :meth:`~.serialise.Serialisable.sha256`,
  the hash a checkpoint records as ``space_hash``.

:func:`~.resolve.resolve_subnet` refuses a file whose record contradicts the space it is used with (another name,
other block details, or the same ones with another hash: the space's definition changed since the search) in
one line naming both; a file without the record (written before it existed, or by hand) is used as before.
``fairseq-shiftadd-cost`` and the demo report take the space from the record where no option sets it.
This module needs no fairseq and no torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar, Union

from ..cli_errors import InputError
from .configs import BLOCK_DETAILS, SearchSpace
from .serialise import to_plain
from .spaces import get_space

__all__ = ["SPACE_KEY", "header_line", "read_header", "SpaceRecord", "read_space_record"]

_T = TypeVar("_T")
SPACE_KEY = "search_space"
"""Key of the :class:`SpaceRecord` line."""
_YAML_SUFFIXES = (".yaml", ".yml")  # a JSON subnet file has no comments


def header_line(key: str, record: Mapping[str, Any]) -> str:
    """The comment line ``# KEY: {JSON}`` recording ``record`` (read back by :func:`read_header`)."""
    return f"# {key}: " + json.dumps(dict(record), separators=(", ", ": "))


def read_header(path: Union[str, Path], key: str, parse: Callable[[Dict[str, Any]], _T]) -> Optional[_T]:
    """``parse`` of the record on the ``# KEY:`` line of the comment header of ``path`` (the ``#`` lines it starts
    with), or ``None`` if it has none.

    Raises:
        ValueError: ``FILE: invalid '# KEY:' line: REASON``: not a JSON object, or ``parse`` refused it
            (``ValueError``, ``TypeError`` or ``KeyError``).
    """
    prefix = f"# {key}: "
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            if line.startswith(prefix):
                try:
                    record = json.loads(line[len(prefix):])
                    if not isinstance(record, dict):
                        raise ValueError(f"not a JSON object: {line[len(prefix):].strip()[:60]}")
                    return parse(record)
                except (ValueError, TypeError, KeyError) as err:
                    raise ValueError(f"{path}: invalid '{prefix.strip()}' line: {err}") from None
    return None


@dataclass(frozen=True)
class SpaceRecord:
    """The space a subnet was searched in, as a subnet file's header records it.

    Args:
        name: the space's name (a key of :data:`~.spaces.SPACES`).
        details: every block detail (:data:`~.configs.BLOCK_DETAILS`) as plain data: ``block_details`` (the preset,
            ``"original"`` or ``"compact"``) and the three overrides (0: the preset's).
        sha256: the space's :meth:`~.serialise.Serialisable.sha256`, block details included.
    """

    name: str
    details: Dict[str, Any]
    sha256: str

    @classmethod
    def of(cls, space: SearchSpace) -> "SpaceRecord":
        """The record of ``space``."""
        return cls(space.name, {name: to_plain(getattr(space, name)) for name in BLOCK_DETAILS}, space.sha256())

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "SpaceRecord":
        """Inverse of :meth:`header`'s record.

        Raises:
            ValueError: a missing or unknown key, or a name or hash that is not a string.
        """
        keys = ("name", *BLOCK_DETAILS, "sha256")
        if set(record) != set(keys):
            raise ValueError(f"keys {sorted(record)}, expected {list(keys)}")
        for key in ("name", "sha256"):
            if not isinstance(record[key], str):
                raise ValueError(f"{key}={record[key]!r} must be a string")
        return cls(record["name"], {name: record[name] for name in BLOCK_DETAILS}, record["sha256"])

    def header(self) -> str:
        """The ``# search_space: {...}`` line of the record."""
        return header_line(SPACE_KEY, {"name": self.name, **self.details, "sha256": self.sha256})

    @property
    def block_details(self) -> str:
        """The recorded preset (``"original"`` or ``"compact"``)."""
        return self.details[BLOCK_DETAILS[0]]

    def space(self) -> SearchSpace:
        """The shipped space :attr:`name` with the recorded block details (overrides included).

        Raises:
            ValueError: an unknown space name, or block details that the space does not allow.
        """
        return SearchSpace.from_dict({**get_space(self.name).to_dict(), **self.details})

    def _set_details(self) -> Dict[str, Any]:
        """The preset and the overrides that are set (non-zero)."""
        return {k: v for k, v in self.details.items() if v or k == BLOCK_DETAILS[0]}

    def describe(self) -> str:
        """``space 'demo' (block_details 'compact')``, with the overrides that are set."""
        return f"space {self.name!r} ({', '.join(f'{k} {v!r}' for k, v in self._set_details().items())})"

    def options(self) -> str:
        """The model options that select this space: ``--space demo --block-details compact`` (and set overrides)."""
        details = [f"--{k.replace('_', '-')} {v}" for k, v in self._set_details().items()]
        return " ".join([f"--space {self.name}"] + details)

    def check(self, space: SearchSpace, where: str) -> None:
        """Refuse ``space`` unless it is the recorded one (name, block details and hash).

        Raises:
            InputError: one line naming ``where`` (the option and the file), the recorded and the used space.
        """
        used = SpaceRecord.of(space)
        if (used.name, used.details) != (self.name, self.details):
            raise InputError(
                f"{where} records that it was searched in {self.describe()}, not in {used.describe()} "
                f"as used here: use it with {self.options()}"
            )
        if used.sha256 != self.sha256:
            raise InputError(
                f"{where} records that it was searched in {self.describe()} with sha256 {self.sha256[:12]}, but "
                f"that space is {used.sha256[:12]} here: its definition changed since the search"
            )


def read_space_record(spec: str) -> Optional[SpaceRecord]:
    """The :class:`SpaceRecord` of the subnet spec ``spec`` if it is a YAML file with one in its header, else
    ``None`` (a name, inline JSON, a JSON file, a missing or binary file, or a file without the record: reading the
    spec reports what is wrong with it).

    Raises:
        ValueError: as :func:`read_header` (the record line is invalid).
    """
    path = Path(spec.strip())
    if spec.strip().startswith("{") or path.suffix.lower() not in _YAML_SUFFIXES or not path.is_file():
        return None
    try:
        return read_header(path, SPACE_KEY, SpaceRecord.from_dict)
    except UnicodeDecodeError:
        return None
