"""Resumable, atomic preparation steps.

A step writes its output atomically (:func:`~fairseq_shiftadd.atomic.atomic_path`: into ``<output>.partial``,
renamed to ``<output>`` when it succeeds), so an interrupted run never leaves an output that a later run would
take as finished; a finished output is skipped on re-runs.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

from ..atomic import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: Path, is_dir: bool = False) -> Iterator[Path | None]:
    """Yield a temporary path to write ``path`` into (an empty directory if ``is_dir``), or None when ``path``
    already exists.

    Usage::

        with atomic_output(out) as tmp:
            if tmp is not None:
                write(tmp)
    """
    path = Path(path)
    if path.exists():
        logger.info("%s exists: skipped", path)
        yield None
        return
    with atomic_path(path, directory=is_dir) as tmp:
        yield tmp
