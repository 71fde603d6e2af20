"""The weight-slot state-dict keys of checkpoints written before today's names, and their renaming.

Until commit fcdea53 a slot's keys repeated "weight" and the storage key (``ffn.fc1.shared.weight.weights.shared``,
``ffn.fc1.mult.weight.weights.mult``); today's say what each tensor is (``ffn.fc1.weight.shared``; the layout is
in :class:`~.sharing.WeightSlot`). Models rename on load, per slot (fairseq's ``upgrade_state_dict_named``);
checkpoint averaging renames whole state dicts (:func:`upgrade_legacy_keys`). Both use :data:`LEGACY_KEYS`.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping, Optional, Set, Tuple

from torch import Tensor

__all__ = ["LEGACY_KEYS", "legacy_key", "upgrade_legacy_keys"]

LEGACY_KEYS: Tuple[Tuple[str, str], ...] = (
    (r"(?P<key>[^.]+)\.weight\.weights\.[^.]+", "weight.{key}"),
    (r"(?P<key>[^.]+)\.weight\.(?P<part>exponent|sign)", "ps_weight.{key}.{part}"),
    (r"(?P<key>[^.]+)\.weight\.remaps\.(?P<op>[^.]+)\.log_scale", "remap.{op}.log_scale"),
    (r"(?P<key>[^.]+)\.bias", "bias.{key}"),
)
"""A weight slot's state-dict keys before the current names (commit fcdea53 and earlier) -> today's, relative to
the slot: ``(pattern of the old key, new key)``; ``<key>`` is the storage key (``shared`` or a user's name).
E.g. ``shared.weight.weights.shared`` -> ``weight.shared``, ``mult.weight.weights.mult`` -> ``weight.mult``,
``shift.weight.exponent`` -> ``ps_weight.shift.exponent``, ``shared.weight.remaps.add.log_scale`` ->
``remap.add.log_scale``, ``shared.bias`` -> ``bias.shared``. Quantiser keys did not change."""


def legacy_key(key: str, storage_keys: Iterable[str]) -> Optional[str]:
    """Today's name of a slot's old state-dict key (relative to the slot), or ``None`` if it is not an old key of
    one of ``storage_keys`` (:data:`LEGACY_KEYS`)."""
    for pattern, new in LEGACY_KEYS:
        match = re.fullmatch(pattern, key)
        if match and match["key"] in storage_keys:
            return new.format(**match.groupdict())
    return None


_LEGACY_STORAGE = re.compile(r"(?P<slot>.+)\.(?P<key>[^.]+)\.weight\.(?:weights\.[^.]+|exponent)")
"""An old slot storage's weight key: its slot's name and storage key (every old storage had one)."""


def upgrade_legacy_keys(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """A whole model state dict with every old weight-slot key renamed (:data:`LEGACY_KEYS`), for code that holds a
    checkpoint's tensors without a model (checkpoint averaging); other keys, today's included, pass unchanged.

    The old slots and their storage keys are found by their weight keys (``<slot>.<key>.weight.weights.<k>`` or
    ``<slot>.<key>.weight.exponent``); a model that loads a state dict does the same per slot
    (:meth:`~.sharing.WeightSlot.upgrade_state_dict_named`).
    """
    storages: Dict[str, Set[str]] = {}
    for key in state:
        match = _LEGACY_STORAGE.fullmatch(key)
        if match:
            storages.setdefault(match["slot"], set()).add(match["key"])
    upgraded = {}
    for key, tensor in state.items():
        slot = key.rsplit(".", 2)[0]  # an old slot key has two or more parts below its slot
        while slot not in storages and "." in slot:
            slot = slot.rsplit(".", 1)[0]
        new = legacy_key(key[len(slot) + 1:], storages[slot]) if slot in storages else None
        upgraded[key if new is None else f"{slot}.{new}"] = tensor
    return upgraded
