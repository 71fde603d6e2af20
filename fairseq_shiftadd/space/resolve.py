"""The one grammar of subnet specs: ``largest``, ``smallest``, inline JSON or a ``.json``/``.yaml``/``.yml`` file.

:func:`parse_subnet_spec` checks what needs no space (before a checkpoint or the data loads), :func:`resolve_subnet`
gives the subnet of a space; training, validation, export, search, cost and the demo report all call them.
This module needs no fairseq and no torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Optional

from ..cli_errors import InputError
from .configs import SearchSpace, SubnetConfig
from .genes import check
from .sampling import largest, smallest

__all__ = ["NAMED_SUBNETS", "parse_subnet_spec", "resolve_subnet"]


NAMED_SUBNETS: Dict[str, Callable[[SearchSpace], SubnetConfig]] = {"largest": largest, "smallest": smallest}
"""Subnets a spec may name instead of giving a file or JSON."""

_SPEC_SHOWN = 60


def _shown(spec: str) -> str:
    """``spec`` as quoted in a message: inline JSON can be long, so it is cut after 60 characters."""
    return repr(spec[:_SPEC_SHOWN] + "..." if spec.startswith("{") and len(spec) > _SPEC_SHOWN else spec)


def parse_subnet_spec(spec: str, option: str = "--subnet") -> Optional[SubnetConfig]:
    """Read a subnet spec without a space: ``None`` for a name in :data:`NAMED_SUBNETS`, else the subnet.

    A spec is ``largest``, ``smallest``, inline JSON (starting with ``{``) or a ``.json``/``.yaml``/``.yml``
    file. This checks everything that needs no space (before a checkpoint or the data loads);
    :func:`resolve_subnet` finishes the job.

    Raises:
        InputError: one line naming ``option`` and the spec: unknown name, missing or unreadable file, bad
            suffix, or contents that are not a SubnetConfig (naming the field).
    """
    spec = spec.strip()
    if spec in NAMED_SUBNETS:
        return None
    try:
        if spec.startswith("{"):
            try:
                data = json.loads(spec)
            except json.JSONDecodeError as err:
                raise ValueError(f"invalid inline JSON: {err}") from None
            return SubnetConfig.from_dict(data)
        path = Path(spec)
        if path.suffix.lower() not in (".json", ".yaml", ".yml"):
            raise ValueError(f"not {', '.join(map(repr, NAMED_SUBNETS))}, inline JSON or a .json/.yaml/.yml file")
        if not path.is_file():
            raise ValueError("no such file (allowed: largest, smallest, inline JSON or a .json/.yaml/.yml file)")
        try:
            return SubnetConfig.load(path)
        except json.JSONDecodeError as err:
            raise ValueError(f"invalid JSON: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"unreadable: {err}") from None
    except ValueError as err:
        raise InputError(f"{option} {_shown(spec)}: {err}") from None


def resolve_subnet(spec: str, space: SearchSpace, option: str = "--subnet") -> SubnetConfig:
    """The subnet of ``space`` that ``spec`` names (see :func:`parse_subnet_spec`), checked with :func:`check`.

    The one resolver of subnet specs: training, export, search, cost and the demo report all call it.

    Raises:
        InputError: as :func:`parse_subnet_spec`, or the subnet is not in ``space`` (naming the field and
            the allowed values).
    """
    sub = parse_subnet_spec(spec, option)
    if sub is None:
        return NAMED_SUBNETS[spec.strip()](space)
    try:
        check(space, sub)
    except ValueError as err:
        raise InputError(f"{option} {_shown(spec.strip())}: not in space {space.name!r}: {err}") from None
    return sub
