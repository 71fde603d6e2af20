"""Triton adder kernels (fairseq_shiftadd.ops.kernels.triton_adder): on a GPU, or through TRITON_INTERPRET=1 on CPU.

Skipped where Triton is not installed (the optional ``gpu`` extra: ``pip install -e .[gpu]``). Triton reads
``TRITON_INTERPRET`` when it is imported, so without a GPU a plain test run executes this file again in a
subprocess with the flag set (:func:`test_kernels_in_the_interpreter`); the kernel tests run there, and on a
machine with CUDA directly on the GPU (autotuned tiles, with larger shapes added). The interpreter runs one
fixed tile (16 x 16, unrolled by 4), so every shape below is ragged against it; the GPU-only shapes are ragged
against every autotuned tile and leave a tail after the unrolled loops.
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
ON_GPU = triton_adder.triton_available() and torch.cuda.is_available() and not INTERPRETING
DEVICE = "cuda" if ON_GPU else "cpu"
pytestmark = pytest.mark.skipif(not triton_adder.triton_available(),
                                reason="triton is not installed (the `gpu` extra)")
on_kernels = pytest.mark.skipif(not (INTERPRETING or ON_GPU),
                                reason="runs on a GPU, or without one in the TRITON_INTERPRET=1 subprocess")
SHAPES = {"dense": (1, 37, 21, 19), "groups": (3, 9, 17, 11), "one_row": (2, 23, 1, 9)}
if ON_GPU:
    SHAPES.update(tiles=(1, 1000, 515, 131), tiles_groups=(3, 257, 130, 67), wide=(1, 4099, 2051, 517))


@pytest.mark.skipif(INTERPRETING or ON_GPU, reason="this is the subprocess, or the kernels run on the GPU")
def test_kernels_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", FAIRSEQ_SHIFTADD_KERNELS="")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]  # the interpreter tests ran (not all skipped)


@pytest.fixture
def kernels_on(monkeypatch):
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")


def _run(x, w, g, centre, reference, monkeypatch):
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference" if reference else "")
    xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = add_matmul(xi, wi, eta=0.2, centre_outputs=centre)
    y.backward(g)
    return y.detach(), xi.grad, wi.grad


def _random(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE).to(dtype)


@on_kernels
def test_kernels_take_the_devices_tensors(kernels_on):
    assert triton_adder.triton_supported(torch.zeros(1, device=DEVICE), torch.zeros(1, dtype=torch.bfloat16,
                                                                                       device=DEVICE))
    assert not triton_adder.triton_supported(torch.zeros(1, dtype=torch.float64, device=DEVICE))  # reference


@on_kernels
@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
@pytest.mark.parametrize("centre", [False, True], ids=["plain", "centred"])
def test_triton_matches_reference_float32(kernels_on, monkeypatch, shape, centre):
    groups, rows, cols, length = shape
    torch.manual_seed(0)
    x, w, g = _random(groups, rows, length), _random(groups, cols, length), _random(groups, rows, cols)
    fast = _run(x, w, g, centre, False, monkeypatch)
    slow = _run(x, w, g, centre, True, monkeypatch)
    for a, b in zip(fast, slow):
        assert a.dtype == torch.float32
        assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


@on_kernels
@pytest.mark.parametrize("shape", list(SHAPES)[:1] + list(SHAPES)[3:4])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_triton_half_inputs_accumulate_in_float32(kernels_on, monkeypatch, shape, dtype):
    groups, rows, cols, length = SHAPES[shape]
    torch.manual_seed(1)
    x, w = _random(groups, rows, length, dtype=dtype), _random(groups, cols, length, dtype=dtype)
    g = _random(groups, rows, cols, dtype=dtype)
    y, dx, _ = _run(x, w, g, False, False, monkeypatch)
    assert y.dtype == dx.dtype == dtype
    xd, wd, gd = x.double().cpu(), w.double().cpu(), g.double().cpu()
    diff = xd[:, :, None] - wd[:, None]
    y_true, dx_true = -diff.abs().sum(-1), (gd[..., None] * (-diff).clamp(-1, 1)).sum(-2)
    ulp = torch.finfo(dtype).eps
    assert_close(y.double().cpu(), y_true, rtol=ulp, atol=ulp * y_true.abs().max().item())
    assert_close(dx.double().cpu(), dx_true, rtol=ulp, atol=ulp * dx_true.abs().max().item())


@on_kernels
def test_add_conv2d_runs_on_triton_through_the_dense_kernel(kernels_on, monkeypatch):
    torch.manual_seed(2)
    layer = AddConv2d(3, 5, 3, padding=1, stride=2).to(DEVICE)
    x = _random(2, 3, 7, 6)
    for a, b in zip(*on_both_paths(monkeypatch, lambda: layer_step(layer, x))):
        assert_close(a, b, rtol=1e-5, atol=1e-4)
