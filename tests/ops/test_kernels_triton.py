"""Triton kernels (fairseq_shiftadd.ops.kernels.triton_adder, triton_depthwise): on a GPU, or through TRITON_INTERPRET=1
on CPU.

Skipped where Triton is not installed (the optional ``gpu`` extra: ``pip install -e .[gpu]``). Triton reads
``TRITON_INTERPRET`` when it is imported, so without a GPU a plain test run executes this file again in a
subprocess with the flag set (:func:`test_kernels_in_the_interpreter`); the kernel tests run there, and on a
machine with CUDA directly on the GPU (autotuned tiles, with larger shapes added). The interpreter runs one
fixed tile (16 x 16, unrolled by 4; the depthwise window 32 positions x 16 channels), so every shape below is ragged
against it; the GPU-only shapes are ragged against every autotuned tile and leave a tail after the unrolled loops.
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
from fairseq_shiftadd.ops.kernels import dispatch, triton_adder
from fairseq_shiftadd.ops.lightconv import LightweightAdd, LightweightShiftAdd

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


INPUT_GRAD_FORMS = {"autotuned": None} if ON_GPU else {"bounds": True, "offset": False}


@pytest.fixture(params=list(INPUT_GRAD_FORMS.values()), ids=list(INPUT_GRAD_FORMS))
def input_grad_form(request, monkeypatch):
    """The input gradient's two forms (``BOUNDS``): each in the interpreter; on a GPU the one the autotuner chose."""
    if request.param is not None:
        monkeypatch.setitem(triton_adder._INTERPRETER_FORMS["input_grad"], "BOUNDS", request.param)


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
def test_triton_matches_reference_float32(kernels_on, input_grad_form, monkeypatch, shape, centre):
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
def test_triton_half_inputs_accumulate_in_float32(kernels_on, input_grad_form, monkeypatch, shape, dtype):
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
def test_input_gradient_of_inputs_far_from_the_weights(kernels_on, input_grad_form):
    """Inputs 1000 away from every weight: each term's slope is -+1, so ``dx = -+sum_m g`` up to the sum's rounding.
    (The bounds form clamps x to its column's weight range +- 1 first: its ``sums - x sum_m g`` would cancel
    thousands without that.)"""
    torch.manual_seed(4)
    groups, rows, cols, length = SHAPES["dense"]
    w, g, side = _random(groups, cols, length), _random(groups, rows, cols), torch.sign(_random(groups, rows, 1))
    dx = triton_adder.input_grad(g, 1000 * side + _random(groups, rows, length), w)
    expected = (-side * g.sum(-1, keepdim=True)).expand_as(dx)
    assert_close(dx, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@on_kernels
def test_add_conv2d_runs_on_triton_through_the_dense_kernel(kernels_on, monkeypatch):
    torch.manual_seed(2)
    layer = AddConv2d(3, 5, 3, padding=1, stride=2).to(DEVICE)
    x = _random(2, 3, 7, 6)
    for a, b in zip(*on_both_paths(monkeypatch, lambda: layer_step(layer, x))):
        assert_close(a, b, rtol=1e-5, atol=1e-4)


# the depthwise window (triton_depthwise): depthwise AddConv2d geometries and the add mixers
GEOMETRIES = {
    "pad1": dict(kernel_size=3, padding=1),
    "stride_dilation": dict(kernel_size=(3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3)),
    "strided_5x5": dict(kernel_size=5, stride=(3, 2), padding=1),
}
CONV_CHANNELS = 11 if not ON_GPU else 67  # ragged against every channel tile


def _layer_step(layer, x):
    """:func:`layer_step` in float64 (its output, input gradient and weight gradient, for comparing dtypes)."""
    return [t.double() for t in layer_step(layer, x)]


@pytest.fixture
def window_calls(monkeypatch):
    """The calls of the depthwise window's forward (each fast-path forward, step or not, makes one)."""
    calls, forward = [], dispatch.triton_depthwise.forward

    def record(*args, **kwargs):
        calls.append(args)
        return forward(*args, **kwargs)

    monkeypatch.setattr(dispatch.triton_depthwise, "forward", record)
    return calls


@on_kernels
@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=list(GEOMETRIES))
def test_depthwise_add_conv_on_the_window_kernel_matches_reference(kernels_on, monkeypatch, window_calls, geometry):
    torch.manual_seed(3)
    layer = AddConv2d(CONV_CHANNELS, CONV_CHANNELS, groups=CONV_CHANNELS, eta=0.2, **geometry).to(DEVICE)
    x = _random(2, CONV_CHANNELS, 7, 5)
    fast, slow = on_both_paths(monkeypatch, lambda: _layer_step(layer, x))
    assert len(window_calls) == 1  # the fast run took the window kernel, the reference run did not
    for a, b in zip(fast, slow):
        assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


MIXERS = {"add_centred": (LightweightAdd, "centred", 7), "add_causal": (LightweightAdd, "causal", 5),
          "shiftadd_causal": (LightweightShiftAdd, "causal", 4)}
MIXER_SHAPE = (9, 5, 24) if not ON_GPU else (70, 9, 216)  # (T, B, C): channels ragged against every tile


@on_kernels
@pytest.mark.parametrize("mixer", MIXERS.values(), ids=list(MIXERS))
def test_add_mixers_on_the_window_kernel_match_reference(kernels_on, monkeypatch, window_calls, mixer):
    cls, padding, kernel_size = mixer
    torch.manual_seed(4)
    layer = cls(MIXER_SHAPE[2], kernel_size, 3, padding=padding).to(DEVICE)
    x = _random(*MIXER_SHAPE)
    fast, slow = on_both_paths(monkeypatch, lambda: _layer_step(layer, x))
    assert len(window_calls) == 1
    for a, b in zip(fast, slow):
        assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


@on_kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_add_mixer_half_inputs_accumulate_in_float32(kernels_on, monkeypatch, dtype):
    torch.manual_seed(5)
    layer = LightweightAdd(24, 7, 3, padding="centred", eta=None).to(DEVICE)
    x = _random(11, 4, 24, dtype=dtype)
    y, dx, dw = _layer_step(layer.to(dtype), x)
    truth_layer = LightweightAdd(24, 7, 3, padding="centred", eta=None).double()
    truth_layer.load_state_dict(layer.state_dict())
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference")
    y_true, dx_true, dw_true = _layer_step(truth_layer, x.cpu().double())
    ulp = torch.finfo(dtype).eps
    for value, truth in ((y, y_true), (dx, dx_true), (dw, dw_true)):
        # each sum is rounded once to the half dtype; the float64 operands are the half ones, so only that rounding
        # (and the output gradient's, dx's and dw's) separates them
        assert_close(value.cpu(), truth, rtol=4 * ulp, atol=4 * ulp * truth.abs().max().item())


@on_kernels
@pytest.mark.parametrize("padding", ["centred", "causal"])
def test_add_mixer_steps_on_the_window_kernel_equal_forward(kernels_on, window_calls, padding):
    torch.manual_seed(6)
    layer = LightweightAdd(16, 5, 4, padding=padding).to(DEVICE).eval()
    x = _random(8, 3, 16)
    with torch.no_grad():
        whole = layer(x)
        outputs, buffer = [], None
        for t in range(x.size(0)):
            y, buffer = layer.step(x[t:t + 1], buffer)
            if y is not None:
                outputs.append(y)
        outputs.append(layer.flush(buffer))
    assert len(window_calls) == 1 + x.size(0) - layer.right_padding  # the whole sequence, then every full window
    assert_close(torch.cat(outputs), whole, rtol=1e-5, atol=1e-5 * whole.abs().max().item())
    if padding == "causal":  # every step sums its window as the forward sums that row: bit for bit (quantised models
        assert torch.equal(torch.cat(outputs), whole)  # decode as they score; the centred flush is the reference's)
