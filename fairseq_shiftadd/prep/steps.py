"""Resumable, atomic preparation steps.

A step writes into ``<output>.partial`` and renames it to ``<output>`` when it succeeds, so an
interrupted run never leaves an output that a later run would take as finished; a finished
output is skipped on re-runs.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: Path, is_dir: bool = False) -> Iterator[Path | None]:
    """Yield a temporary path to write ``path`` into, or None when ``path`` already exists.

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
    tmp = path.with_name(path.name + ".partial")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    if is_dir:
        tmp.mkdir(parents=True)
    else:
        tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    os.replace(tmp, path)
