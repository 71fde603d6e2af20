"""The CPU kernels built for other instruction sets than this machine's (``$FAIRSEQ_SHIFTADD_KERNEL_ARCH``).

The kernels' vectors and register tiles follow the instruction set they are compiled for (``simd.h``: 64-byte vectors
and 32 registers with AVX-512, 32-byte vectors and 16 registers with AVX2, 16-byte vectors otherwise), so a machine
tests only its own branch unless told otherwise. Here the kernel tests run again in a subprocess whose kernels are
built for AVX2 (``x86-64-v3``, what most laptops run; on an AVX2 machine 64-byte vectors once compiled to scalar code
and made the add layer 25x slower) and, marked slow, for the x86-64 baseline (SSE2, no fused multiply-add).
"""
import ctypes
import os
import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from fairseq_shiftadd.ops.kernels import build, cpu_adder

KERNEL_TESTS = ["test_kernels_cpu_adder.py", "test_kernels_cpu_shift.py", "test_kernels_depthwise.py"]
X86 = platform.machine() in ("x86_64", "AMD64")
VECTOR_BYTES = {"x86-64": 16, "x86-64-v3": 32}  # what simd.h gives each


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    """An empty kernel cache, and libraries loaded afresh before and after."""
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNEL_CACHE", str(tmp_path))
    build.load_library.cache_clear()
    cpu_adder.KERNELS.reset()
    yield tmp_path
    build.load_library.cache_clear()
    cpu_adder.KERNELS.reset()


@pytest.mark.skipif(not X86, reason="names x86 instruction sets")
def test_named_instruction_set_sets_the_vector_width(own_cache, monkeypatch):
    """x86-64 (SSE2) reaches the compiler: the adder's weight panel is then 2 vectors of 16 bytes (8 floats), and the
    library is named without this CPU's flags (machines of different CPUs can share it)."""
    if shutil.which(build.COMPILER) is None:
        pytest.skip("no compiler here")
    monkeypatch.setenv(build.ARCH_VARIABLE, "x86-64")
    assert "-march=x86-64" in build.flags()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        library = build.load_library(cpu_adder._SOURCE)
    assert library is not None and library.shiftadd_mr_float() == 2 * 16 // 4
    assert len(list(own_cache.iterdir())) == 1
    monkeypatch.setattr(build, "_cpu_signature", lambda: "flags\t: fpu sse2 another_cpu")
    build.load_library.cache_clear()
    monkeypatch.setattr(build, "_build", None)  # found in the cache under the same name: no rebuild
    assert build.load_library(cpu_adder._SOURCE) is not None


@pytest.mark.skipif(not X86, reason="names x86 instruction sets")
def test_instruction_set_this_cpu_lacks_is_declined_in_one_line(own_cache, monkeypatch):
    monkeypatch.setenv(build.ARCH_VARIABLE, "x86-64-v3")
    monkeypatch.setattr(build, "_cpu_signature", lambda: "flags\t: fpu sse sse2")
    with pytest.warns(RuntimeWarning, match=r"FAIRSEQ_SHIFTADD_KERNEL_ARCH=x86-64-v3 uses .*avx2.*which this CPU "
                                            r"lacks\); using the reference PyTorch path") as record:
        assert not cpu_adder.cpu_supported(torch.zeros(1))
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert list(own_cache.iterdir()) == []  # nothing built


def test_unknown_instruction_set_fails_its_build_in_one_line(own_cache, monkeypatch):
    monkeypatch.setenv(build.ARCH_VARIABLE, "no-such-cpu")
    monkeypatch.setattr(build, "_cpu_signature", lambda: "flags\t: fpu sse2")
    with pytest.warns(RuntimeWarning, match=r"building the cpu_adder kernel failed \(.*no-such-cpu.*\); using the "
                                            r"reference PyTorch path"):
        assert not cpu_adder.cpu_supported(torch.zeros(1))


@pytest.mark.parametrize("arch", [pytest.param("x86-64-v3"), pytest.param("x86-64", marks=pytest.mark.slow)])
def test_kernel_tests_pass_built_for(arch, tmp_path):
    """The kernel test files, again, in a subprocess whose kernels are built for ``arch`` (its own cache)."""
    if not X86 or not {"avx2", "fma"} <= build.cpu_features() and arch == "x86-64-v3":
        pytest.skip(f"this CPU cannot run {arch}")
    if shutil.which(build.COMPILER) is None:
        pytest.skip("no compiler here")
    env = dict(os.environ, FAIRSEQ_SHIFTADD_KERNEL_ARCH=arch, FAIRSEQ_SHIFTADD_KERNEL_CACHE=str(tmp_path),
               FAIRSEQ_SHIFTADD_KERNELS="", OMP_NUM_THREADS="1")
    here = Path(__file__).parent
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist",
               "-k", "not cached_per_machine", *(str(here / name) for name in KERNEL_TESTS)]  # that one builds again
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=here.parents[1])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and " skipped" not in done.stdout.splitlines()[-1]
    built = sorted(path.name.split("-")[0] for path in tmp_path.glob("*.so"))
    assert built == ["cpu_adder", "cpu_depthwise", "cpu_mixer", "cpu_shift"]
    probe = ctypes.CDLL(str(next(tmp_path.glob("cpu_adder-*.so"))))
    assert probe.shiftadd_mr_float() == 2 * VECTOR_BYTES[arch] // 4  # simd.h's width for this instruction set
