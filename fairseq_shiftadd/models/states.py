"""State dicts of standalone modules assembled from their parts (the exports of the supernet's modules)."""
from __future__ import annotations

from typing import Dict, Mapping

from torch import Tensor

__all__ = ["prefixed", "merge_states"]


def prefixed(prefix: str, state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """``state`` with every key under ``prefix`` (``"<prefix>.<key>"``)."""
    return {f"{prefix}.{name}": tensor for name, tensor in state.items()}


def merge_states(states: Mapping[str, Mapping[str, Tensor]]) -> Dict[str, Tensor]:
    """One state dict from the state dicts of named submodules."""
    return {key: tensor for prefix, state in states.items() for key, tensor in prefixed(prefix, state).items()}
