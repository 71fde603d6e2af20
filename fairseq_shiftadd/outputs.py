"""Writing results without losing any: never over an input, never over a result unasked, never half-written.

Every console script that writes a checkpoint uses these two functions (one owner of the rule).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from .cli_errors import InputError

__all__ = ["check_output", "save_atomically"]


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


def save_atomically(state: Any, output: Path) -> None:
    """``torch.save(state)`` to ``OUTPUT.partial``, then rename it to ``output`` (a kill leaves no half file)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, output)
