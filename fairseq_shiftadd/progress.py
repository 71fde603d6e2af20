"""Progress bars that stay readable in redirected logs.

:func:`progress` is the one place this package makes a progress bar. On a terminal it is a plain ``tqdm``
bar. When the stream is not a terminal (a log file, a pipe, a scheduler's output), tqdm would write
``\\r``-separated bar fragments into the file; there the same bar writes one plain line every
``interval`` seconds (default 30) and a final line, with no ``\\r`` and no cursor movement.
"""
from __future__ import annotations

import re
import sys
from typing import Any, Iterable, Optional, TextIO

from tqdm import tqdm

__all__ = ["progress", "LOG_INTERVAL_S"]

LOG_INTERVAL_S = 30.0
"""Seconds between two progress lines in a log (stream not a terminal)."""

_CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\r")


class _LineStream:
    """A file for tqdm that turns each refresh into one plain line (control sequences removed)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for part in _CONTROL.split(text):
            part = part.strip()
            if part:
                self.stream.write(part + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(
    iterable: Optional[Iterable[Any]] = None,
    *,
    desc: str,
    enabled: bool = True,
    file: Optional[TextIO] = None,
    interval: float = LOG_INTERVAL_S,
    **kwargs: Any,
) -> tqdm:
    """A ``tqdm`` over ``iterable`` on ``file`` (default ``sys.stderr``), plain lines when it is not a terminal.

    Args:
        desc: what progresses (first word of every line).
        enabled: ``False`` shows nothing (e.g. on ranks other than 0).
        interval: seconds between lines when ``file`` is not a terminal.
        kwargs: passed to ``tqdm`` (``total``, ``unit``, ``initial``, ``leave``, ...).
    """
    stream = sys.stderr if file is None else file
    if not enabled:
        return tqdm(iterable, desc=desc, disable=True, **kwargs)
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(iterable, desc=desc, file=stream, **kwargs)
    kwargs.setdefault("leave", True)
    return tqdm(iterable, desc=desc, file=_LineStream(stream), mininterval=interval, maxinterval=interval,
                ascii=True, dynamic_ncols=False, ncols=100, position=0, **kwargs)
