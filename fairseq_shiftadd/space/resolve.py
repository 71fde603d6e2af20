"""The one grammar of subnet specs: a name (``largest``, ``smallest``), inline JSON or a .json / .yaml / .yml file.

:func:`parse_spec` / :func:`resolve_spec` implement it for any config type (the translation :class:`SubnetConfig`
and the vision ``VisionSubnet`` alike); :func:`parse_subnet_spec` checks a translation spec where no space is known
yet (before a checkpoint or the data loads), :func:`resolve_subnet` gives the subnet of a space (refusing a subnet
file whose header records another space: :mod:`.subnet_file`); training, validation, export, search, cost, the demo
report and the vision CLIs all call them. This module needs no fairseq and no torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Type, TypeVar

import yaml

from ..cli_errors import InputError
from .configs import SearchSpace, SubnetConfig
from .genes import check
from .sampling import largest, smallest
from .subnet_file import read_space_record

__all__ = ["NAMED_SUBNETS", "parse_spec", "resolve_spec", "parse_subnet_spec", "resolve_subnet"]

_C = TypeVar("_C")
_S = TypeVar("_S")
_SUFFIXES = (".json", ".yaml", ".yml")


NAMED_SUBNETS: Dict[str, Callable[[SearchSpace], SubnetConfig]] = {"largest": largest, "smallest": smallest}
"""Subnets a spec may name instead of giving a file or JSON."""

_SPEC_SHOWN = 60


def _shown(spec: str) -> str:
    """``spec`` as quoted in a message: inline JSON can be long, so it is cut after 60 characters."""
    return repr(spec[:_SPEC_SHOWN] + "..." if spec.startswith("{") and len(spec) > _SPEC_SHOWN else spec)


def parse_spec(spec: str, config_type: Type[_C], names: Mapping[str, Any], option: str) -> Optional[_C]:
    """Read a spec without a space: ``None`` for a key of ``names``, else ``config_type.from_dict`` of the inline
    JSON (starting with ``{``) or of the ``.json`` / ``.yaml`` / ``.yml`` file the spec is.

    Raises:
        InputError: one line naming ``option`` and the spec: unknown name, missing or unreadable file, bad
            suffix, invalid JSON / YAML, or contents that ``from_dict`` refuses (its message names the field).
    """
    spec = spec.strip()
    if spec in names:
        return None
    forms = "inline JSON or a .json/.yaml/.yml file"
    try:
        if spec.startswith("{"):
            try:
                data = json.loads(spec)
            except json.JSONDecodeError as err:
                raise ValueError(f"invalid inline JSON: {err}") from None
            return config_type.from_dict(data)  # type: ignore[attr-defined]
        path = Path(spec)
        if path.suffix.lower() not in _SUFFIXES:
            raise ValueError(f"not {''.join(f'{name!r}, ' for name in names)}{forms}")
        if not path.is_file():
            raise ValueError(f"no such file (allowed: {''.join(f'{name}, ' for name in names)}{forms})")
        return config_type.from_dict(_read(path))  # type: ignore[attr-defined]
    except ValueError as err:
        raise InputError(f"{option} {_shown(spec)}: {err}") from None


def _read(path: Path) -> Any:
    """The plain data of a ``.json`` (JSON) or ``.yaml`` / ``.yml`` (YAML) file; ``ValueError`` naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"unreadable: {err}") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"invalid YAML: {err}") from None


def resolve_spec(
    spec: str,
    space: _S,
    config_type: Type[_C],
    names: Mapping[str, Callable[[_S], _C]],
    check_config: Callable[[_S, _C], Any],
    option: str,
) -> _C:
    """The config of ``space`` that ``spec`` names: ``names[spec](space)``, or :func:`parse_spec`'s config checked
    by ``check_config(space, config)``.

    Raises:
        InputError: as :func:`parse_spec`, or the config is not in ``space`` (with ``check_config``'s message).
    """
    config = parse_spec(spec, config_type, names, option)
    if config is None:
        return names[spec.strip()](space)
    try:
        check_config(space, config)
    except ValueError as err:
        name = getattr(space, "name", "")
        raise InputError(f"{option} {_shown(spec.strip())}: not in space {name!r}: {err}") from None
    return config


def parse_subnet_spec(spec: str, option: str = "--subnet") -> Optional[SubnetConfig]:
    """A translation subnet spec read without a space (:func:`parse_spec` with :data:`NAMED_SUBNETS`): ``None``
    for ``largest`` / ``smallest``, else the subnet. :func:`resolve_subnet` finishes the job.

    Raises:
        InputError: as :func:`parse_spec`.
    """
    return parse_spec(spec, SubnetConfig, NAMED_SUBNETS, option)


def resolve_subnet(spec: str, space: SearchSpace, option: str = "--subnet") -> SubnetConfig:
    """The subnet of ``space`` that ``spec`` names (:func:`resolve_spec` with :data:`NAMED_SUBNETS` and :func:`check`).

    A subnet file that records the space it was searched in (:mod:`.subnet_file`) must be used in that space.

    Raises:
        InputError: as :func:`parse_spec`, or the subnet is not in ``space`` (naming the field and the allowed
            values), or ``space`` is not the one the file records (naming both, :meth:`SpaceRecord.check`).
    """
    where = f"{option} {_shown(spec.strip())}"
    try:
        record = read_space_record(spec)
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None
    if record is not None:
        record.check(space, where)
    return resolve_spec(spec, space, SubnetConfig, NAMED_SUBNETS, check, option)
