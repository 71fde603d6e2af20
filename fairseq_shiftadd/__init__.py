"""fairseq-shiftadd: ShiftAddNAS (arXiv 2205.08119) as a fairseq plugin.

``fairseq_shiftadd.ops``, ``space`` and ``cost`` need only PyTorch (or nothing). With fairseq installed, the
plugin's tasks, models and criterions are registered (:mod:`fairseq_shiftadd.registry`) as soon as both this
package and fairseq are imported, in either order: at once if fairseq is already imported (``--user-dir
fairseq_shiftadd``), else right after fairseq's own import finishes (a one-shot import hook,
:class:`_RegisterAfterFairseq`). The subpackages that need fairseq (``models``, ``tasks``, ``criterions``: the
registry's) import it first thing, so the registry never meets one of their modules half-imported. Importing
the package therefore does not import fairseq: the console scripts that do not need it (``fairseq-shiftadd-cost``,
``-score``, ``-prepare-*``, the latency and vision tools) answer ``--help`` and argument errors without fairseq's
slow import.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Optional, Sequence

__version__ = "0.1.0"


def _register() -> None:
    from . import registry  # noqa: F401  (registers on import; imports fairseq)


class _RegisterAfterFairseq(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the first import of ``fairseq`` it leaves ``sys.meta_path`` and wraps fairseq's
    loader so that :func:`_register` runs once fairseq's ``__init__`` has run (all of fairseq is loaded then)."""

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if name != "fairseq":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec  # not installed: the import fails as without the hook
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_register(module: ModuleType) -> None:
            exec_module(module)
            _register()

        loader.exec_module = exec_and_register  # type: ignore[method-assign]
        return spec


if sys.modules.get("fairseq") is not None:  # None: an import of fairseq is blocked (tests do so)
    _register()
elif not any(isinstance(finder, _RegisterAfterFairseq) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterFairseq())
