"""Triton adder kernels (fairseq_shiftadd.ops.kernels.triton_adder) through TRITON_INTERPRET=1 on CPU.

Skipped where Triton is not installed (the optional ``gpu`` extra: ``pip install -e .[gpu]``). Triton reads
``TRITON_INTERPRET`` when it is imported, so a plain test run executes this file again in a subprocess with
the flag set (:func:`test_kernels_in_the_interpreter`); the other tests run only there. The interpreter
runs one fixed tile (16 x 16 x 8), so every shape below is ragged against it.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from _kernel_paths import layer_step, on_both_paths
from fairseq_shiftadd.ops.adder import AddConv2d, add_matmul
from fairseq_shiftadd.ops.kernels import triton_adder

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(not triton_adder.triton_available(),
                                reason="triton is not installed (the `gpu` extra)")
in_interpreter = pytest.mark.skipif(not INTERPRETING, reason="runs in the TRITON_INTERPRET=1 subprocess")
SHAPES = {"dense": (1, 37, 21, 19), "groups": (3, 9, 17, 11), "one_row": (2, 23, 1, 9)}


@pytest.mark.skipif(INTERPRETING, reason="this is the subprocess")
def test_kernels_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", FAIRSEQ_SHIFTADD_KERNELS="")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]  # the interpreter tests ran (not all skipped)


@pytest.fixture
def interpreter(monkeypatch):
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")


def _run(x, w, g, centre, reference, monkeypatch):
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference" if reference else "")
    xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = add_matmul(xi, wi, eta=0.2, centre_outputs=centre)
    y.backward(g)
    return y.detach(), xi.grad, wi.grad


@in_interpreter
def test_interpreter_takes_cpu_tensors(interpreter):
    assert triton_adder.triton_supported(torch.zeros(1), torch.zeros(1, dtype=torch.bfloat16))
    assert not triton_adder.triton_supported(torch.zeros(1, dtype=torch.float64))  # float64: reference


@in_interpreter
@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
@pytest.mark.parametrize("centre", [False, True], ids=["plain", "centred"])
def test_triton_matches_reference_float32(interpreter, monkeypatch, shape, centre):
    groups, rows, cols, length = shape
    torch.manual_seed(0)
    x, w, g = torch.randn(groups, rows, length), torch.randn(groups, cols, length), torch.randn(groups, rows, cols)
    fast = _run(x, w, g, centre, False, monkeypatch)
    slow = _run(x, w, g, centre, True, monkeypatch)
    for a, b in zip(fast, slow):
        assert a.dtype == torch.float32
        assert_close(a, b, rtol=1e-5, atol=1e-4)


@in_interpreter
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_triton_half_inputs_accumulate_in_float32(interpreter, monkeypatch, dtype):
    groups, rows, cols, length = SHAPES["dense"]
    torch.manual_seed(1)
    x, w = torch.randn(groups, rows, length).to(dtype), torch.randn(groups, cols, length).to(dtype)
    g = torch.randn(groups, rows, cols).to(dtype)
    y, dx, _ = _run(x, w, g, False, False, monkeypatch)
    assert y.dtype == dx.dtype == dtype
    xd, wd, gd = x.double(), w.double(), g.double()
    diff = xd[:, :, None] - wd[:, None]
    y_true, dx_true = -diff.abs().sum(-1), (gd[..., None] * (-diff).clamp(-1, 1)).sum(-2)
    ulp = torch.finfo(dtype).eps
    assert_close(y.double(), y_true, rtol=ulp, atol=ulp * y_true.abs().max().item())
    assert_close(dx.double(), dx_true, rtol=ulp, atol=ulp * dx_true.abs().max().item())


@in_interpreter
def test_add_conv2d_runs_on_triton_through_the_dense_kernel(interpreter, monkeypatch):
    torch.manual_seed(2)
    layer = AddConv2d(3, 5, 3, padding=1, stride=2)
    x = torch.randn(2, 3, 7, 6)
    for a, b in zip(*on_both_paths(monkeypatch, lambda: layer_step(layer, x))):
        assert_close(a, b, rtol=1e-5, atol=1e-4)
