"""Typed, frozen dataclasses that check their fields and round-trip through plain data, JSON and YAML.

:class:`Serialisable` is the base of the space's configs (:mod:`.configs`): on construction every field is checked
against its annotation (ints, strings, str-enums, tuples, ``Optional``, nested dataclasses); ``to_dict`` gives
plain data with enums spelled as their values; ``from_dict`` / ``from_json`` / ``from_yaml`` / ``load`` read it
back, naming the field path of any error. :func:`fmt_value` and :func:`fmt_values` quote values as messages do.
This module needs no fairseq and no torch.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Type, TypeVar, Union

import yaml

__all__ = ["Serialisable", "fmt_value", "fmt_values", "to_plain"]

_T = TypeVar("_T", bound="Serialisable")


def fmt_value(value: Any) -> str:
    """``repr`` of a value as messages quote it (an enum as its value)."""
    return repr(value.value) if isinstance(value, Enum) else repr(value)


def fmt_values(values: Sequence[Any]) -> str:
    """Allowed values as messages list them: ``(1024, 768)``, ``('attention', 'lightweight_conv')``."""
    return "(" + ", ".join(fmt_value(v) for v in values) + ")"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any, path: str, *, plain: bool) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it.

    With ``plain`` (data from JSON/YAML), lists become tuples, strings enums and mappings dataclasses;
    without it the value must already have the exact type (tuples, enum members, dataclass instances).
    """
    if typing.get_origin(tp) is Union:  # Optional[X]
        (inner,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return None if value is None else _convert(inner, value, path, plain=plain)
    if typing.get_origin(tp) is tuple:  # Tuple[X, ...]
        if not (isinstance(value, tuple) or (plain and isinstance(value, list))):
            raise ValueError(f"{path}={value!r} must be a {'list' if plain else 'tuple'}")
        item = typing.get_args(tp)[0]
        return tuple(_convert(item, v, f"{path}[{i}]", plain=plain) for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, Enum):
        if isinstance(value, tp):
            return value
        if not (plain and isinstance(value, str)):
            raise ValueError(f"{path}={value!r} must be a {tp.__name__}")
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{path}={value!r} not in allowed values {fmt_values(tuple(tp))}") from None
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if plain and isinstance(value, Mapping):
            return _dataclass_from_plain(tp, value, path)
        raise ValueError(f"{path}={value!r} must be a {'mapping' if plain else tp.__name__}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{path}={value!r} must be an int")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{path}={value!r} must be a str")
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def _dataclass_from_plain(cls: type, data: Mapping[str, Any], path: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [str(key) for key in data if key not in fields]
    if unknown:
        raise ValueError(f"{_join(path, unknown[0])}: unknown key (expected {fmt_values(tuple(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(_hints(cls)[name], data[name], _join(path, name), plain=True)
        elif f.default is dataclasses.MISSING:
            raise ValueError(f"{_join(path, name)}: missing key")
    return cls(**kwargs)


def to_plain(value: Any) -> Any:
    """Plain data of a dataclass, enum or tuple (as :meth:`Serialisable.to_dict`); other values unchanged."""
    if dataclasses.is_dataclass(value):  # a None that is the field's default is left out
        return {
            f.name: to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (getattr(value, f.name) is None and f.default is None)
        }
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value


class Serialisable:
    """Typed fields checked on construction; ``to_dict``/``from_dict``, JSON, YAML, ``save``/``load``."""

    def __post_init__(self) -> None:
        cls = type(self)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _convert(_hints(cls)[f.name], getattr(self, f.name), f"{cls.__name__}.{f.name}", plain=False)

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (dicts, lists, ints, strings): enums as their values, ``None`` defaults left out."""
        return to_plain(self)

    @classmethod
    def from_dict(cls: Type[_T], data: Mapping[str, Any]) -> _T:
        """Inverse of :meth:`to_dict`; fields with defaults may be omitted.

        Raises:
            ValueError: naming the field path (``decoder[2].block``) of a missing or unknown key, a value of
                the wrong type or an unknown enum string (with the allowed values).
        """
        try:
            if not isinstance(data, Mapping):
                raise ValueError(f"expected a mapping, got {type(data).__name__}")
            return _dataclass_from_plain(cls, data, "")
        except ValueError as err:
            raise ValueError(f"{cls.__name__}.from_dict: {err}") from None

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def sha256(self) -> str:
        """SHA-256 (hex) of the canonical JSON (sorted keys, no spaces): equal for equal values, on any machine."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def from_json(cls: Type[_T], text: str) -> _T:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)

    @classmethod
    def from_yaml(cls: Type[_T], text: str) -> _T:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{cls.__name__}.from_yaml: invalid YAML: {err}") from None
        return cls.from_dict(data)

    def save(self, path: Union[str, Path]) -> None:
        """Write to ``path`` as JSON (``.json``) or YAML (``.yaml``, ``.yml``)."""
        path = Path(path)
        path.write_text(self.to_json(indent=2) + "\n" if _is_json(path) else self.to_yaml(), encoding="utf-8")

    @classmethod
    def load(cls: Type[_T], path: Union[str, Path]) -> _T:
        """Read a file written by :meth:`save` (format chosen by the suffix)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        return cls.from_json(text) if _is_json(path) else cls.from_yaml(text)


def _is_json(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"path={str(path)!r}: suffix must be .json, .yaml or .yml")
    return suffix == ".json"

