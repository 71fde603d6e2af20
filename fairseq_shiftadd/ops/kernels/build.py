"""Compile a kernel source at first use into a per-machine cache, and load it with ctypes.

A shared library is built with ``g++ -O3 -march=native -fopenmp`` (no torch headers, so a build takes a few
seconds) into ``$FAIRSEQ_SHIFTADD_KERNEL_CACHE`` (default ``~/.cache/fairseq_shiftadd/kernels``), named by a
hash of the source, the headers beside it, the flags and the CPU's feature flags: it compiles once per machine
and source version.
Builds write to a temporary file of their own and rename it into place (:func:`~fairseq_shiftadd.atomic.atomic_path`,
``partial="unique"``), so concurrent processes never load half a file.
A failed build (no compiler, a compile error) warns once, in one line, and returns None: callers then use
their reference path.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Optional

from ...atomic import atomic_path

__all__ = ["load_library", "kernel_cache_dir"]

COMPILER = os.environ.get("CXX", "g++")
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-std=c++17", "-shared", "-fPIC")


def kernel_cache_dir() -> Path:
    """Where built libraries are kept (``$FAIRSEQ_SHIFTADD_KERNEL_CACHE`` or ``~/.cache/fairseq_shiftadd/kernels``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fairseq_shiftadd" / "kernels"
    return Path(os.environ.get("FAIRSEQ_SHIFTADD_KERNEL_CACHE", default))


def _cpu_signature() -> str:
    """The CPU's feature flags (``-march=native`` depends on them), or the empty string off Linux."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


@functools.lru_cache(maxsize=None)
def load_library(source: Path) -> Optional[ctypes.CDLL]:
    """The compiled ``source`` (built on first use, then cached on disk), or None with a one-line warning.

    The cache key covers the source and every header beside it (``*.h``, which the sources include).
    """
    texts = [source.read_bytes(), *(header.read_bytes() for header in sorted(source.parent.glob("*.h")))]
    key = hashlib.sha256(b"\0".join([*texts, " ".join((COMPILER,) + FLAGS).encode(), _cpu_signature().encode()]))
    target = kernel_cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
    try:
        if not target.exists():
            _build(source, target)
        return ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = error.stderr.strip().splitlines()[0] if isinstance(error, subprocess.CalledProcessError) and \
            error.stderr else str(error)
        warnings.warn(f"fairseq_shiftadd: building the {source.stem} kernel failed ({detail}); "
                      f"using the reference PyTorch path", RuntimeWarning, stacklevel=3)
        return None


def _build(source: Path, target: Path) -> None:
    """``COMPILER FLAGS source -o target``, atomically (temporary file, then rename)."""
    if shutil.which(COMPILER) is None:
        raise OSError(f"compiler {COMPILER!r} not found (set CXX)")
    with atomic_path(target, partial="unique") as temporary:
        subprocess.run([COMPILER, *FLAGS, str(source), "-o", str(temporary)], check=True, capture_output=True,
                       text=True)
