"""Tensors derived from parameters, rebuilt only when they change (the inference fast path of weight readers).

A shift layer's float weight ``s * 2**p``, or a supernet slot's ``q(W)`` / ``T_add(W)`` / ``q(T_shift(W))``,
costs a few passes over the full weight to rebuild; at inference it is the same on every call.
:class:`DerivedTensorCache` keeps it, keyed on each source parameter's in-place version counter
(``Tensor._version``, bumped by optimizer steps, ``load_state_dict``, ``clamp_``), storage address, dtype,
device and shape.

The rules, owned here and used by every reader (the shift layers of :mod:`..shift`, the weight slots of the
translation supernet):

* **when** (:meth:`DerivedTensorCache.read`): only when no autograd graph would be recorded, i.e. gradient mode
  is off or no source requires a gradient (``torch.no_grad()``, ``torch.inference_mode()``, frozen
  parameters). Otherwise the value is rebuilt on every call, so gradients flow exactly as without a cache.
* **invalidation**: writes through ``.data`` bypass the version counter (fairseq's FP16 optimizer syncs
  parameters that way), so owners are :class:`DerivedTensorOwner` s: setting their ``train()`` / ``eval()``
  mode clears their caches, which every training loop does between updates and evaluation.

A :class:`CompanionCache` keeps a second form of such a cached tensor or of a parameter (a shift weight's packed
codes, an adder weight packed for the CPU kernel), rebuilt when it is handed another tensor object, under the same
rule of when.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Hashable, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["DerivedTensorCache", "CompanionCache", "DerivedTensorOwner", "records_autograd", "caching_disabled"]

_Key = Tuple[tuple, ...]
_Value = TypeVar("_Value")
_enabled = True


def _state_of(sources: Sequence[Tensor]) -> _Key:
    """What says that tensors changed: in-place version, storage address, dtype, device, shape (a module's ``.to()``
    replaces a parameter's storage through ``.data``, which leaves its version as it was)."""
    return tuple((t._version, t.data_ptr(), t.dtype, t.device, t.shape) for t in sources)


def records_autograd(sources: Sequence[Tensor]) -> bool:
    """Whether a computation from ``sources`` records an autograd graph now (grad mode on and a source requires
    a gradient): then :meth:`DerivedTensorCache.read` does not cache."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in sources)


@contextlib.contextmanager
def caching_disabled() -> Iterator[None]:
    """Within the block every :meth:`DerivedTensorCache.read` rebuilds its value (the uncached path), and caches
    keep what they hold. For benchmarks that time cached against uncached inference in one run; not a user option.
    """
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


class DerivedTensorCache:
    """One cached tensor and the state of the parameters it was derived from."""

    def __init__(self) -> None:
        self._key: Optional[_Key] = None
        self._value: Optional[Tensor] = None

    def get(self, sources: Sequence[Tensor], build: Callable[[], Tensor]) -> Tensor:
        """The cached value if no source changed since it was built, else ``build()`` (which may modify sources
        in place, e.g. clamp them: the key is taken after it).

        ``build`` runs without gradients and outside inference mode, so the value is an ordinary tensor that
        later calls in any mode can use (an inference tensor could not be saved for a backward pass).
        """
        if self._value is None or self._key != _state_of(sources):
            with torch.inference_mode(False), torch.no_grad():
                self._value = build()
            self._key = _state_of(sources)
        return self._value

    def read(self, sources: Sequence[Tensor], build: Callable[[], Tensor]) -> Tensor:
        """``build()``, cached by :meth:`get` unless it records autograd (:func:`records_autograd`), in which case it
        is rebuilt on every call and nothing is cached. ``build`` must compute the same value in both cases."""
        if not _enabled or records_autograd(sources):
            return build()
        return self.get(sources, build)

    def clear(self) -> None:
        """Forget the cached value (the next :meth:`get` rebuilds it)."""
        self._key = self._value = None


class CompanionCache:
    """A value derived from one tensor, kept while that same tensor object, unchanged, is passed again.

    For tensors that a :class:`DerivedTensorCache` keeps (the same object for as long as its parameters do not change)
    and for parameters: the identity and state of the tensor (version counter, storage, dtype, device, shape) key the
    value, and the reference held to it keeps its address from being reused (writes through ``.data`` into the same
    storage bypass all of that: owners clear it, as :class:`DerivedTensorOwner` s). Like
    :meth:`DerivedTensorCache.read`, only while no autograd graph would be recorded through the tensor (and caching is
    enabled); None otherwise.
    """

    def __init__(self) -> None:
        self._source: Optional[Tensor] = None
        self._key: Hashable = None
        self._value: Any = None

    def read(self, source: Tensor, derive: Callable[[Tensor], _Value], key: Hashable = ()) -> Optional[_Value]:
        """``derive(source)`` (None included), computed once per tensor object, version and ``key`` (what else the
        value depends on, e.g. a slice's shape); None while ``source`` records autograd or caching is disabled."""
        if not _enabled or records_autograd((source,)):
            return None
        state = (_state_of((source,)), key)
        if self._source is not source or self._key != state:
            with torch.inference_mode(False), torch.no_grad():
                self._value = derive(source)
            self._source, self._key = source, state
        return self._value

    def clear(self) -> None:
        """Forget the value and the tensor it was derived from."""
        self._source = self._value = self._key = None


class DerivedTensorOwner(nn.Module):
    """A module holding :class:`DerivedTensorCache` s (and :class:`CompanionCache` s), which it clears whenever
    ``train()`` / ``eval()`` sets its mode (writes through ``.data`` bypass the version counters the caches are
    keyed on).

    Subclasses list their caches in :meth:`derived_caches`.
    """

    def derived_caches(self) -> Iterable[DerivedTensorCache | CompanionCache]:
        """Every cache this module holds."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "DerivedTensorOwner":
        for cache in self.derived_caches():
            cache.clear()
        return super().train(mode)
