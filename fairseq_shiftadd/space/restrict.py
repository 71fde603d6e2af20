"""Sub-spaces: the same supernet searched over fewer choices (e.g. HAT's space inside the demo's).

:func:`parse_restriction` reads the search's ``--restrict FIELD=V1,V2`` items; :func:`restrict` narrows a space to
them. This module needs no fairseq and no torch.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Sequence, Tuple

from .configs import FIXED_FIELDS, SearchSpace
from .serialise import fmt_values, to_plain

__all__ = ["RESTRICTABLE", "parse_restriction", "restrict"]


RESTRICTABLE: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SearchSpace) if f.name not in FIXED_FIELDS)
"""The :class:`SearchSpace` fields a restriction may narrow: the gene choices (not the
:data:`~.configs.FIXED_FIELDS`: kernel sizes, ``qkv_dim``, block details)."""


def _restriction_fields(key: str) -> Tuple[str, ...]:
    """The fields a restriction key names: a field, or ``X`` for both ``encoder_X`` and ``decoder_X``."""
    if key in RESTRICTABLE:
        return (key,)
    pair = (f"encoder_{key}", f"decoder_{key}")
    if all(name in RESTRICTABLE for name in pair):
        return pair
    shorthands = sorted({n.split("_", 1)[1] for n in RESTRICTABLE if n.startswith("encoder_")}
                        & {n.split("_", 1)[1] for n in RESTRICTABLE if n.startswith("decoder_")})
    raise ValueError(f"restriction {key!r}: not a gene field; allowed: {', '.join(RESTRICTABLE + tuple(shorthands))}")


def parse_restriction(items: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """Parse ``FIELD=V1,V2`` items (the search's ``--restrict``) into ``{field: (value strings, ...)}``.

    ``FIELD`` is one of :data:`RESTRICTABLE`, or a shorthand ``X`` for both ``encoder_X`` and ``decoder_X``
    (``blocks``, ``embed_dims``, ``ffn_dims``, ``layers``), e.g. ``["blocks=attention", "ffn_ops=mult"]``:
    HAT's space. Values are checked against a space by :func:`restrict`.

    Raises:
        ValueError: an item without ``=`` or values, an unknown field, or a field given twice.
    """
    out: Dict[str, Tuple[str, ...]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parsed = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not parsed:
            raise ValueError(f"restriction {item!r}: expected FIELD=VALUE[,VALUE...]")
        for name in _restriction_fields(key.strip()):
            if name in out:
                raise ValueError(f"restriction {item!r}: {name} restricted twice")
            out[name] = parsed
    return out


def restrict(space: SearchSpace, choices: Mapping[str, Sequence[Any]]) -> SearchSpace:
    """The sub-space of ``space`` whose fields in ``choices`` allow only the given values.

    Every subnet of the result passes :func:`check` against ``space`` (its values are a subset of each field's,
    and the fields left out are kept), so a supernet trained on ``space`` evaluates it with inherited weights.
    The result is named ``"<space>|<field>=<values>|..."`` (the search's resume fingerprint tells them apart).
    Values may be strings (``"attention"``, ``"256"``, from :func:`parse_restriction`) or typed values.

    Raises:
        ValueError: an unknown field, a value not among the field's values in ``space`` (naming both), or a
            sub-space that breaks a :class:`SearchSpace` rule.
    """
    narrowed: Dict[str, Tuple[Any, ...]] = {}
    for name, values in choices.items():
        if name not in RESTRICTABLE:
            raise ValueError(f"restriction {name!r}: not a gene field; allowed: {', '.join(RESTRICTABLE)}")
        allowed = getattr(space, name)
        kept = []
        for value in values:
            match = [a for a in allowed if str(to_plain(a)) == str(to_plain(value))]
            if not match:
                raise ValueError(
                    f"restriction {name}={to_plain(value)!r} not in space {space.name!r}'s allowed values "
                    f"{fmt_values(allowed)}"
                )
            kept.append(match[0])
        narrowed[name] = tuple(dict.fromkeys(kept))
    label = "".join(f"|{name}={','.join(str(to_plain(v)) for v in vals)}" for name, vals in narrowed.items())
    return dataclasses.replace(space, name=space.name + label, **narrowed)
