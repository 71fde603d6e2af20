"""Matplotlib for the package's PNG outputs: the headless backend, quiet logging, atomic saving.

Matplotlib is imported only when a plot is drawn, so importing a module that can plot stays cheap.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .atomic import atomic_path

__all__ = ["pyplot", "save_png"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the ``Agg`` backend (no display needed), its logger at WARNING (fairseq may have set
    the root logger to DEBUG, and matplotlib then logs every font it scores)."""
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` as PNG atomically (a killed run leaves no truncated image), then close it."""
    with atomic_path(Path(path)) as partial:
        fig.savefig(partial, format="png", dpi=dpi)
    pyplot().close(fig)
