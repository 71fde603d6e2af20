"""A tensor derived from parameters, rebuilt only when they change (inference fast path of the shift layers).

A shift layer's float weight ``s * 2**p`` costs a few passes over ``M x K`` to rebuild; at inference it is the
same on every call. :class:`DerivedTensorCache` keeps it, keyed on each source parameter's in-place version
counter (``Tensor._version``, bumped by optimizer steps, ``load_state_dict``, ``clamp_``), storage address,
dtype, device and shape. Writes through ``.data`` bypass the version counter (fairseq's FP16 optimizer syncs
parameters that way): owners therefore also :meth:`~DerivedTensorCache.clear` the cache whenever their
``train()`` / ``eval()`` mode is set, which every training loop does between updates and evaluation.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

from torch import Tensor

__all__ = ["DerivedTensorCache"]

_Key = Tuple[tuple, ...]


class DerivedTensorCache:
    """One cached tensor and the state of the parameters it was derived from."""

    def __init__(self) -> None:
        self._key: Optional[_Key] = None
        self._value: Optional[Tensor] = None

    @staticmethod
    def _key_of(sources: Sequence[Tensor]) -> _Key:
        return tuple((t._version, t.data_ptr(), t.dtype, t.device, t.shape) for t in sources)

    def get(self, sources: Sequence[Tensor], build: Callable[[], Tensor]) -> Tensor:
        """The cached value if no source changed since it was built, else ``build()`` (which may modify sources
        in place, e.g. clamp them: the key is taken after it)."""
        if self._value is None or self._key != self._key_of(sources):
            self._value = build()
            self._key = self._key_of(sources)
        return self._value

    def clear(self) -> None:
        """Forget the cached value (the next :meth:`get` rebuilds it)."""
        self._key = self._value = None
