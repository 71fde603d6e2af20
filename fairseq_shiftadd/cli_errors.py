"""One-line errors for every console script of the plugin and for its fairseq components.

A bad input (an option, a config field, a file) is reported as ONE line on stderr that names it and says
what is allowed, with a non-zero exit status; a traceback is printed only for a real bug, or when asked for:

* :class:`InputError` is how this package reports a bad input. It is a ``ValueError`` (callers that
  catch ``ValueError`` keep working).
* :func:`run_main` wraps a console script's ``main``: an :class:`InputError`, a ``ValueError`` (the
  package's validators raise it with the field and the allowed values) or an ``OSError`` (a missing file,
  a failed download) becomes ``PROG: error: MESSAGE`` and exit status 2; anything else propagates (a bug:
  full traceback). A bug that raises ``ValueError`` also prints one line: ``--debug`` shows where.
  ``--debug`` anywhere on the command line (removed before ``main`` sees it) or
  ``FAIRSEQ_SHIFTADD_DEBUG=1`` re-raises instead.
* :func:`short_usage` makes an ``argparse`` parser print its one-line synopsis and the error, instead of
  fairseq's full usage dump (hundreds of lines) before it.
* :func:`install_excepthook` (done when the plugin is imported) does the same for fairseq's own commands
  (``fairseq-train``, ``-generate``, ``-interactive``, ``-validate``): an uncaught :class:`InputError`
  prints one line (exit status 1, Python's for an uncaught exception); other exceptions go to the
  previous hook unchanged. There ``FAIRSEQ_SHIFTADD_DEBUG=1`` gives the traceback. (Exceptions of
  spawned distributed workers reach the launcher wrapped by torch, and keep their traceback.)

No fairseq import here: ``space.py`` and ``cost/`` raise :class:`InputError` too.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from types import TracebackType
from typing import Callable, Optional, Sequence, Type

__all__ = ["InputError", "DEBUG_ENV", "add_debug_flag", "run_main", "short_usage", "install_excepthook", "one_line"]

DEBUG_ENV = "FAIRSEQ_SHIFTADD_DEBUG"
"""Environment variable: set to 1 for full tracebacks of input errors."""

USAGE_EXIT = 2
"""Exit status of a bad input (as argparse's)."""


class InputError(ValueError):
    """A bad user input; the message names the option, field or file and what is allowed."""


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(err: BaseException) -> Optional[str]:
    """The one-line message of an input error, or ``None`` if ``err`` is not one (a bug).

    Input errors are ``ValueError`` s (:class:`InputError` among them) and ``OSError`` s (a missing file,
    a failed download); one that names a file reads ``FILE: REASON``.
    """
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, (ValueError, OSError)):
        text = " ".join(str(err).split())
        return text or type(err).__name__
    return None


def run_main(main: Callable[[Optional[Sequence[str]]], object], prog: Optional[str] = None) -> Callable[..., None]:
    """``main`` as a console-script entry point with one-line input errors (see the module docstring).

    Args:
        main: ``main(argv)``; ``argv=None`` reads ``sys.argv[1:]``.
        prog: program name for the message (default: ``basename(sys.argv[0])``).
    """

    @functools.wraps(main)
    def entry(argv: Optional[Sequence[str]] = None) -> None:
        args = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in args or _debugging()
        args = [a for a in args if a != "--debug"]
        try:
            main(args)
        except Exception as err:  # noqa: BLE001 - classified by one_line; bugs are re-raised
            message = None if debug else one_line(err)
            if message is None:
                raise
            name = prog or os.path.basename(sys.argv[0]) or "fairseq-shiftadd"
            print(f"{name}: error: {message}", file=sys.stderr)
            raise SystemExit(USAGE_EXIT) from None

    return entry


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """List ``--debug`` in ``--help`` (:func:`run_main` removes it from the arguments before parsing)."""
    parser.add_argument("--debug", action="store_true",
                        help=f"full tracebacks instead of one-line errors (default: off; or set {DEBUG_ENV}=1)")


def short_usage(parser: argparse.ArgumentParser, synopsis: Optional[str] = None) -> argparse.ArgumentParser:
    """Make ``parser.error`` print ``usage: SYNOPSIS (--help lists every option)`` and the error only.

    Args:
        synopsis: the one-line usage (default: the program name).
    """
    line = f"usage: {parser.prog} {synopsis or '...'}  (--help lists every option)"

    def error(message: str) -> None:
        print(line, file=sys.stderr)
        print(f"{parser.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(USAGE_EXIT)

    parser.error = error  # type: ignore[method-assign]
    return parser


def install_excepthook() -> None:
    """Print an uncaught :class:`InputError` as one line on stderr (idempotent); Python then exits with 1."""
    previous = sys.excepthook
    if getattr(previous, "_shiftadd", False):
        return

    def hook(kind: Type[BaseException], err: BaseException, tb: Optional[TracebackType]) -> None:
        if isinstance(err, InputError) and not _debugging():
            name = os.path.basename(sys.argv[0]) or "fairseq"
            print(f"{name}: error: {' '.join(str(err).split())}", file=sys.stderr)
            return
        previous(kind, err, tb)

    hook._shiftadd = True  # type: ignore[attr-defined]
    sys.excepthook = hook
