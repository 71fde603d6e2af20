"""Atomic writes: write into a temporary ``<target>.partial``, and rename it onto the target only on success.

A killed or failed write thus leaves the previous complete target (or none), never half of one, so a later run
or step can trust every file it finds. The one owner of the rule for files and directories alike, for every
writer of the package (checkpoints, search state and reports, data preparation and downloads, compiled kernels,
the demo's report). The temporary name is one rule too, :func:`partial_path`: code that cleans up after a killed
run (``fairseq-shiftadd-search``) or resumes a download finds exactly what a write left behind.

Only the standard library and torch are imported, so every layer, ``ops/`` included, may use it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

import torch

__all__ = ["PARTIAL_SUFFIX", "PARTIAL_MODES", "partial_path", "remove", "atomic_path", "write_text", "save_torch"]

PARTIAL_SUFFIX = ".partial"
"""The suffix of every temporary of an atomic write (``<name>.partial``, or ``<name>.<random>.partial``)."""

PARTIAL_MODES = ("fresh", "resume", "unique")
"""How :func:`atomic_path` picks and treats its temporary (see there)."""

PathLike = Union[str, Path]


def partial_path(path: PathLike) -> Path:
    """``<path>.partial``: where an atomic write of ``path`` is made (and where a download resumes)."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def remove(path: PathLike) -> None:
    """Remove ``path``, a file or a directory tree, if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _temporary(path: Path, directory: bool, partial: str) -> Path:
    if partial == "unique":  # a fresh name per call: concurrent writers of one target never share a temporary
        make = tempfile.mkdtemp if directory else tempfile.mkstemp
        made = make(prefix=f"{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
        if not directory:
            os.close(made[0])
            made = made[1]
        return Path(made)
    temporary = partial_path(path)
    if partial == "fresh":  # what a killed run left behind is not resumable
        remove(temporary)
        if directory:
            temporary.mkdir()
    return temporary


@contextlib.contextmanager
def atomic_path(path: PathLike, directory: bool = False, partial: str = "fresh") -> Iterator[Path]:
    """Yield a temporary path to write ``path`` into; it replaces ``path`` only if the block succeeds.

    On success the temporary is renamed onto ``path`` (``os.replace``: a file is overwritten at once; a directory
    ``path`` is removed just before the rename, which cannot replace a non-empty directory). On an exception
    ``path`` is untouched and, unless ``partial="resume"``, the temporary is removed. The parent directory is
    created.

    Usage::

        with atomic_path(out) as tmp:
            torch.save(state, tmp)

    Args:
        directory: the temporary is created as an empty directory to write files into.
        partial: ``"fresh"``: :func:`partial_path` of ``path``, a stale one (a killed run's) removed first;
            ``"resume"``: :func:`partial_path`, kept as it is (the block may append to it) and kept on failure
            (a download resumes from it); ``"unique"``: a new ``<name>.<random>.partial`` per call, for
            processes that may write the same target at once (the kernel cache).

    Raises:
        ValueError: ``partial`` is not one of :data:`PARTIAL_MODES`.
    """
    if partial not in PARTIAL_MODES:
        raise ValueError(f"partial must be one of {PARTIAL_MODES}, got {partial!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path, directory, partial)
    try:
        yield temporary
        if directory and path.is_dir():
            remove(path)
        os.replace(temporary, path)
    except BaseException:
        if partial != "resume":
            remove(temporary)
        raise


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def save_torch(state: Any, path: PathLike) -> None:
    """``torch.save(state)`` to ``path`` atomically (a kill leaves no half-written checkpoint)."""
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
