"""Writing results without losing any: never over an input, never over a result unasked.

Every console script that writes a checkpoint checks its output with :func:`check_output` (one owner of the rule)
and writes it with :func:`~fairseq_shiftadd.atomic.save_torch` (never half-written).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .cli_errors import InputError

__all__ = ["check_output"]


def check_output(output: Path, inputs: Sequence[Path], force: bool, option: str = "--output") -> None:
    """Refuse to write ``output`` over one of ``inputs``, or over an existing file without ``force``.

    Call it before any work, so that a refused run costs nothing.

    Raises:
        InputError: one line naming ``option`` and the path.
    """
    output = Path(output)
    if not output.exists():
        return
    if any(Path(path).exists() and os.path.samefile(output, path) for path in inputs):
        raise InputError(f"{option} {output} is one of the inputs: write to another path")
    if not force:
        raise InputError(f"{option} {output} exists: pass --force to replace it")

