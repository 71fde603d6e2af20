"""Inactive candidates stand still: no optimizer update for what the update's subnet did not use.

A supernet update trains one sampled subnet (ShiftAddNAS, arXiv 2205.08119; HAT, arXiv 2005.14187); the
candidates it did not run must not move. In one process they get no gradient (``grad is None``) and fairseq's
optimizers skip them. Several paths, however, fill missing gradients with zeros before the step: fairseq's
``legacy_ddp`` all-reduce, and ``--fp16``'s copy of the fp16 gradients into the fp32 master weights. Adam then
updates a candidate from its stale momentum and decays its moments, and weight decay shrinks it (measured by
``benchmarks/inactive_drift.py``: a candidate that moved 5.0e-3 in 5 active updates moves 3.4e-3 more in the next
5 inactive ones). HAT has the same flaw.

:class:`InactiveParameterGuard` records, after the backward passes of an update and before any all-reduce, which
model parameters received a gradient (the ones the subnet touched: every rank draws the same subnet, so the
local record is the global one), and hooks the optimizer's inner ``torch.optim.Optimizer`` so that every other
model parameter skips the step entirely: its weight, its moments and its step count stay bit-identical.

* A parameter the optimizer holds itself (fp32 training, ``--memory-efficient-fp16``, ``--fp16`` with
  ``--fp16-no-flatten-grads``, where the optimizer holds one fp32 copy per parameter): its gradient is set to
  ``None`` before the step, so the optimizer skips it, as in one process.
* ``--fp16`` with flattened fp32 master weights (fairseq's default): the parameter is a slice of one flat
  tensor that the step updates as a whole; the slice of the weight and of every state tensor of the flat
  tensor's shape (Adam's moments) is saved before the step and written back after it. The flat tensor's
  shared step count still advances (Adam's bias correction of every slice uses it).
"""
from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional, Set, Tuple

import torch
from torch import Tensor, nn

__all__ = ["InactiveParameterGuard"]

# (the model parameter, the tensor the optimizer updates for it, its slice there or None for the whole tensor)
_Entry = Tuple[Tensor, Tensor, Optional[slice]]


def _entries(optimizer: Any) -> List[_Entry]:
    """Which optimizer tensor (and which part of it) holds each model parameter of a fairseq optimizer."""
    fp32_params = getattr(optimizer, "fp32_params", None)
    if fp32_params is None:  # the optimizer updates the model's parameters themselves
        return [(p, p, None) for group in optimizer.optimizer.param_groups for p in group["params"]]
    fp16_params = [p for p in optimizer.fp16_params if p.requires_grad]
    if not optimizer.has_flat_params:
        return [(p, p32, None) for p, p32 in zip(fp16_params, fp32_params)]
    flats = fp32_params if isinstance(fp32_params, dict) else {None: fp32_params}
    entries = []
    for device, flat in flats.items():
        offset = 0
        for p in (p for p in fp16_params if device is None or p.device.index == device):
            entries.append((p, flat, slice(offset, offset + p.numel())))
            offset += p.numel()
    return entries


class InactiveParameterGuard:
    """Makes the optimizer skip the model parameters that the current update's subnet did not touch.

    Usage, in a task's ``train_step`` after the backward passes of a micro-batch (before fairseq reduces the
    gradients)::

        guard.record(model, update_num)      # the parameters with a gradient are the touched ones
        guard.attach(optimizer)               # once per optimizer; the hooks act at every step

    Parameters of modules other than the recorded model (a criterion's) are left alone. Records of the same
    ``update_num`` (``--update-freq`` micro-batches) accumulate; a new ``update_num`` starts afresh, so a step
    skipped by fairseq (fp16 overflow) leaves nothing stale.
    """

    def __init__(self) -> None:
        self._update: Optional[int] = None
        self._model_params: Dict[int, Tensor] = {}
        self._touched: Set[int] = set()
        self._attached: "weakref.WeakSet[torch.optim.Optimizer]" = weakref.WeakSet()
        self._saved: List[Tuple[Tensor, slice, Tensor]] = []

    def record(self, model: nn.Module, update_num: int) -> None:
        """Note the parameters of ``model`` that hold a gradient now as touched by update ``update_num``."""
        if update_num != self._update:
            self._update, self._touched = update_num, set()
        params = list(model.parameters())
        self._model_params = {id(p): p for p in params}
        self._touched.update(id(p) for p in params if p.grad is not None)

    def untouched(self) -> List[Tensor]:
        """The recorded model's parameters that the current update did not touch."""
        return [p for key, p in self._model_params.items() if key not in self._touched]

    def attach(self, optimizer: Any) -> None:
        """Hook the inner ``torch.optim.Optimizer`` of the fairseq ``optimizer`` (idempotent)."""
        inner = optimizer.optimizer
        if inner in self._attached:
            return
        self._attached.add(inner)
        inner.register_step_pre_hook(lambda *_: self._before_step(optimizer))
        inner.register_step_post_hook(lambda *_: self._after_step())

    def _before_step(self, optimizer: Any) -> None:
        if self._update is None:
            return
        skipped = {id(p) for p in self.untouched()}
        self._saved = []
        for param, held, part in _entries(optimizer):
            if id(param) not in skipped:
                continue
            if part is None:
                held.grad = None
                continue
            state = optimizer.optimizer.state.get(held, {})
            tensors = [held.data] + [v for v in state.values() if torch.is_tensor(v) and v.shape == held.shape]
            self._saved.extend((t, part, t[part].clone()) for t in tensors)

    @torch.no_grad()
    def _after_step(self) -> None:
        for tensor, part, value in self._saved:
            tensor[part] = value
        self._saved = []
