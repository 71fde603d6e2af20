"""Compile a kernel source at first use into a per-machine cache, and load it with ctypes.

A shared library is built with ``g++ -O3 -march=native -fopenmp -ffp-contract=fast`` (``a += b * c`` as one
fused multiply-add; no torch headers, so a build takes a few seconds) into ``$FAIRSEQ_SHIFTADD_KERNEL_CACHE``
(default ``~/.cache/fairseq_shiftadd/kernels``), named by a hash of the source, the headers beside it, the flags
and the CPU's feature flags: it compiles once per machine and source version.
Builds write to a temporary file of their own and rename it into place (:func:`~fairseq_shiftadd.atomic.atomic_path`,
``partial="unique"``), so concurrent processes never load half a file.
A failed build (no compiler, a compile error) warns once, in one line, and returns None: callers then use
their reference path. :func:`load_kernels` also declares the C functions' arguments, and :func:`call_kernel` calls
one with tensors passed as pointers.
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
from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor

from ...atomic import atomic_path

__all__ = ["KERNEL_DTYPES", "Signature", "load_library", "load_kernels", "call_kernel", "kernel_cache_dir"]

KERNEL_DTYPES = {torch.float32: "float", torch.float64: "double"}
"""The dtypes every kernel is compiled for, and the suffix of their C functions (``shiftadd_{name}_{suffix}``)."""

Signature = Tuple[int, int, int]
"""A kernel's arguments: how many pointers, then how many ``int64_t``, then how many ``int`` (the last: threads)."""

COMPILER = os.environ.get("CXX", "g++")
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-ffp-contract=fast", "-std=c++17",
         "-shared", "-fPIC")


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


def load_kernels(source: Path, signatures: Mapping[str, Signature]) -> Optional[ctypes.CDLL]:
    """:func:`load_library`, with the arguments of ``shiftadd_{name}_{suffix}`` declared for every name and dtype."""
    library = load_library(source)
    if library is None:
        return None
    for name, (pointers, sizes, ints) in signatures.items():
        for suffix in KERNEL_DTYPES.values():
            function = getattr(library, f"shiftadd_{name}_{suffix}")
            function.argtypes = [ctypes.c_void_p] * pointers + [ctypes.c_int64] * sizes + [ctypes.c_int] * ints
            function.restype = None
    return library


def call_kernel(library: ctypes.CDLL, name: str, dtype: torch.dtype, *args: Tensor | int) -> None:
    """``shiftadd_{name}_{suffix}(args..., threads)``: tensors as data pointers, then ``torch.get_num_threads()``."""
    function = getattr(library, f"shiftadd_{name}_{KERNEL_DTYPES[dtype]}")
    function(*[a.data_ptr() if isinstance(a, Tensor) else a for a in args], torch.get_num_threads())


def _build(source: Path, target: Path) -> None:
    """``COMPILER FLAGS source -o target``, atomically (temporary file, then rename)."""
    if shutil.which(COMPILER) is None:
        raise OSError(f"compiler {COMPILER!r} not found (set CXX)")
    with atomic_path(target, partial="unique") as temporary:
        subprocess.run([COMPILER, *FLAGS, str(source), "-o", str(temporary)], check=True, capture_output=True,
                       text=True)
