"""Compile a kernel source at first use into a per-machine cache, and load it with ctypes.

A shared library is built with ``g++ -O3 -march=native -fopenmp -ffp-contract=fast`` (``a += b * c`` as one
fused multiply-add; no torch headers, so a build takes a few seconds) into ``$FAIRSEQ_SHIFTADD_KERNEL_CACHE``
(default ``~/.cache/fairseq_shiftadd/kernels``), named by a hash of the source, the headers beside it, the flags
and the CPU's feature flags: it compiles once per machine and source version. ``$FAIRSEQ_SHIFTADD_KERNEL_ARCH``
names another instruction set for ``-march`` (:data:`ARCH_VARIABLE`).
Builds write to a temporary file of their own and rename it into place (:func:`~fairseq_shiftadd.atomic.atomic_path`,
``partial="unique"``), so concurrent processes never load half a file.
A failed build (no compiler, a compile error) warns once, in one line, and returns None: callers then use
their reference path. A :class:`KernelLibrary` declares a source's C functions, says whether tensors can take them,
and calls them with tensors passed as pointers. :func:`enabled` is the one switch of every fast path.
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
from typing import Callable, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ...atomic import atomic_path

__all__ = ["KERNEL_DTYPES", "HALF_DTYPES", "Signature", "GradScale", "ARCH_VARIABLE", "enabled", "kernel_arch",
           "flags", "cpu_features", "KernelLibrary", "load_library", "kernel_cache_dir"]

KERNEL_DTYPES = {torch.float32: "float", torch.float64: "double"}
"""The dtypes every kernel is compiled for, and the suffix of their C functions (``shiftadd_{name}_{suffix}``)."""

HALF_DTYPES = (torch.bfloat16, torch.float16)
"""Dtypes the CPU kernels take by computing in float32 (and rounding the results back once)."""

Signature = Tuple[int, int, int]
"""A kernel's arguments: how many pointers, then how many ``int64_t``, then how many ``int`` (the last: threads)."""

GradScale = Callable[[Tensor, Tensor], Tensor]
"""The caller's adaptive scaling of a kernel's weight gradient, ``scale(dw, p)`` with ``p = g^T x``
(:func:`~fairseq_shiftadd.ops.adder.scale_weight_grad`, passed in so that the kernels do not import the operators)."""

COMPILER = os.environ.get("CXX", "g++")
ARCH_VARIABLE = "FAIRSEQ_SHIFTADD_KERNEL_ARCH"
"""Names the instruction set the kernels are built for (``-march=``; unset: ``native``, this machine's): a portable
one such as ``x86-64-v3`` (AVX2 and FMA) lets machines of different CPUs share a kernel cache (the library is then
named without this CPU's flags). A set with features this CPU lacks is declined in a one-line warning, the reference
path runs; an unknown name fails its build likewise."""

_FEATURE_MACROS = {"__SSE4_2__": "sse4_2", "__AVX__": "avx", "__AVX2__": "avx2", "__FMA__": "fma", "__F16C__": "f16c",
                   "__BMI2__": "bmi2", "__AVX512F__": "avx512f", "__AVX512CD__": "avx512cd",
                   "__AVX512BW__": "avx512bw", "__AVX512DQ__": "avx512dq", "__AVX512VL__": "avx512vl"}
"""The compiler's instruction-set macros that a named ``-march`` may define, and the ``/proc/cpuinfo`` flag of each."""


def kernel_arch() -> str:
    """The ``-march`` the kernels are built for: ``$FAIRSEQ_SHIFTADD_KERNEL_ARCH``, or ``native``."""
    return os.environ.get(ARCH_VARIABLE, "").strip() or "native"


def flags() -> Tuple[str, ...]:
    """The compiler's flags for :func:`kernel_arch` (vectors up to 512 bits where the instruction set has them)."""
    return ("-O3", f"-march={kernel_arch()}", "-mprefer-vector-width=512", "-fopenmp", "-ffp-contract=fast",
            "-std=c++17", "-shared", "-fPIC")


def enabled() -> bool:
    """False when ``FAIRSEQ_SHIFTADD_KERNELS=reference`` asks for the reference paths only (read at every call)."""
    return os.environ.get("FAIRSEQ_SHIFTADD_KERNELS", "").strip().lower() != "reference"


def kernel_cache_dir() -> Path:
    """Where built libraries are kept (``$FAIRSEQ_SHIFTADD_KERNEL_CACHE`` or ``~/.cache/fairseq_shiftadd/kernels``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fairseq_shiftadd" / "kernels"
    return Path(os.environ.get("FAIRSEQ_SHIFTADD_KERNEL_CACHE", default))


def _cpu_signature() -> str:
    """The CPU's feature flags (``-march=native`` depends on them), or the empty string off Linux x86."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


def cpu_features() -> set[str]:
    """This CPU's feature flags as ``/proc/cpuinfo`` names them (``avx2``, ``fma``, ...); empty where unknown."""
    return set(_cpu_signature().partition(":")[2].split())


def _features_this_cpu_lacks(arch: str) -> list[str]:
    """The features (``/proc/cpuinfo`` names) that code built for ``-march=arch`` may use and this CPU lacks: none
    for ``native``, nor where the CPU's flags are unknown. Raises ``CalledProcessError`` for a name the compiler
    does not know."""
    cpu = cpu_features()
    if arch == "native" or not cpu:
        return []
    macros = subprocess.run([COMPILER, f"-march={arch}", "-dM", "-E", "-x", "c++", os.devnull], check=True,
                            capture_output=True, text=True).stdout
    defined = {line.split()[1] for line in macros.splitlines() if line.startswith("#define ")}
    return sorted(flag for macro, flag in _FEATURE_MACROS.items() if macro in defined and flag not in cpu)


@functools.lru_cache(maxsize=None)
def load_library(source: Path) -> Optional[ctypes.CDLL]:
    """The compiled ``source`` (built on first use, then cached on disk), or None with a one-line warning.

    The cache key covers the source and every header beside it (``*.h``, which the sources include).
    """
    texts = [source.read_bytes(), *(header.read_bytes() for header in sorted(source.parent.glob("*.h")))]
    arch = kernel_arch()
    machine = _cpu_signature() if arch == "native" else ""  # a named set builds the same library on any machine
    key = hashlib.sha256(b"\0".join([*texts, " ".join((COMPILER,) + flags()).encode(), machine.encode()]))
    target = kernel_cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
    try:
        missing = _features_this_cpu_lacks(arch)
        if missing:
            raise OSError(f"{ARCH_VARIABLE}={arch} uses {', '.join(missing)}, which this CPU lacks")
        if not target.exists():
            _build(source, target)
        return ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = error.stderr.strip().splitlines()[0] if isinstance(error, subprocess.CalledProcessError) and \
            error.stderr else str(error)
        warnings.warn(f"fairseq_shiftadd: building the {source.stem} kernel failed ({detail}); "
                      f"using the reference PyTorch path", RuntimeWarning, stacklevel=3)
        return None


class KernelLibrary:
    """The C functions ``shiftadd_{name}_{suffix}`` of one kernel source, built at first use (:func:`load_library`).

    ``signatures`` maps each name to its :data:`Signature`, declared once the library loads. One instance per source
    (``cpu_adder``, ``cpu_depthwise``, ``cpu_mixer``) owns its availability check and its calls.
    """

    def __init__(self, source: Path, signatures: Mapping[str, Signature]) -> None:
        self.source, self.signatures = source, dict(signatures)
        self._functions: dict[tuple[str, torch.dtype], Callable[..., None]] = {}  # (name, dtype) -> C function

    @functools.cached_property
    def library(self) -> Optional[ctypes.CDLL]:
        """The loaded library with its functions' arguments declared, or None where it did not build."""
        library = load_library(self.source)
        if library is None:
            return None
        for name, (pointers, sizes, ints) in self.signatures.items():
            for suffix in KERNEL_DTYPES.values():
                function = getattr(library, f"shiftadd_{name}_{suffix}")
                function.argtypes = [ctypes.c_void_p] * pointers + [ctypes.c_int64] * sizes + [ctypes.c_int] * ints
                function.restype = None
        return library

    def reset(self) -> None:
        """Forget the loaded library, so that the next use loads (or builds) it again."""
        self.__dict__.pop("library", None)
        self._functions.clear()

    def supports(self, *tensors: Tensor) -> bool:
        """Whether these tensors take the kernels: fast paths on (:func:`enabled`), on CPU, float64 / float32 (or
        bfloat16 / float16, computed in float32), and the library built."""
        if not enabled():
            return False
        for t in tensors:  # one loop, no generators, no device object: a decoding step asks at every position
            if not t.is_cpu or (t.dtype not in KERNEL_DTYPES and t.dtype not in HALF_DTYPES):
                return False
        return self.library is not None

    def call(self, name: str, *args: Tensor | int) -> None:
        """``shiftadd_{name}_{suffix}(args..., threads)`` for the dtype of the first argument (a tensor): tensors as
        data pointers, then ``torch.get_num_threads()``."""
        key = (name, args[0].dtype)
        function = self._functions.get(key)
        if function is None:
            function = self._functions[key] = getattr(self.library, f"shiftadd_{name}_{KERNEL_DTYPES[key[1]]}")
        function(*[a.data_ptr() if isinstance(a, Tensor) else a for a in args], torch.get_num_threads())


def _build(source: Path, target: Path) -> None:
    """``COMPILER flags() source -o target``, atomically (temporary file, then rename)."""
    if shutil.which(COMPILER) is None:
        raise OSError(f"compiler {COMPILER!r} not found (set CXX)")
    with atomic_path(target, partial="unique") as temporary:
        subprocess.run([COMPILER, *flags(), str(source), "-o", str(temporary)], check=True, capture_output=True,
                       text=True)
