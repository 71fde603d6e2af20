"""Every CPU kernel computes on several threads what it computes on one.

The suite's pytest-xdist workers run one thread each (tests/conftest.py), so the kernels' OpenMP loops would otherwise
run only single-threaded here; users' processes run them on every core. Each case runs at 1 and at 3 threads (more
than this machine's cores is fine: OpenMP makes them) on shapes past every loop's threshold for going parallel, and
the outputs and gradients must be identical: each output is summed by one thread, in an order that does not depend
on how the work is split.
"""
from typing import Callable, List

import pytest
import torch

from fairseq_shiftadd.ops.adder import AddConv2d, AddLinear
from fairseq_shiftadd.ops.kernels.cpu_depthwise import depthwise_supported
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.ops.lightconv import Padding, lightweight_mix, mix_window
from fairseq_shiftadd.ops.shift import ShiftLinear, clamped_ps_weight, ps_parts, round_pow2_ste


@pytest.fixture
def kernels_built(monkeypatch):
    if not depthwise_supported(torch.zeros(1)):
        pytest.skip("the CPU kernels did not build here (no g++?): only the reference path runs")
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")


def _on_threads(run: Callable[[], List[torch.Tensor]], threads: int) -> List[torch.Tensor]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        return [t.detach().clone() for t in run()]
    finally:
        torch.set_num_threads(previous)


def _with_grads(module: torch.nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Output, input gradient and every parameter gradient for the output gradient ``cos(y)``."""
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(y.detach().cos())
    return [y, x.grad, *(p.grad for p in module.parameters() if p.grad is not None)]


def _mixer(op: OpKind, padding: Padding) -> List[torch.Tensor]:
    x = torch.randn(20, 3, 80, requires_grad=True)  # 2 slices of channels x 3 batch entries: 6 tasks
    kernel = torch.randn(4, 7, requires_grad=True)
    y = lightweight_mix(x, kernel, op, padding, eta=0.2)
    y.backward(y.detach().cos())
    return [y, x.grad, kernel.grad]


def _adder() -> List[torch.Tensor]:
    return _with_grads(AddLinear(64, 40), torch.randn(50, 64))


def _add_conv(groups: int) -> List[torch.Tensor]:
    return _with_grads(AddConv2d(8, 8, 3, padding=1, groups=groups), torch.randn(2, 8, 9, 11))


def _add_conv_inference() -> List[torch.Tensor]:  # the implicit-im2col forward
    layer = AddConv2d(8, 6, 3, padding=1).eval()
    with torch.no_grad():
        return [layer(torch.randn(2, 8, 9, 11))]


def _shift_weights() -> List[torch.Tensor]:  # 2**18 weights: past the elementwise loops' threshold
    exponent, sign = ps_parts(torch.randn(512, 512) * 0.05)
    exponent.requires_grad_()
    sign.requires_grad_()
    weight = clamped_ps_weight(exponent, sign)
    weight.backward(torch.randn_like(weight))
    latent = torch.randn(512, 512) * 0.05
    return [weight, exponent.grad, sign.grad, round_pow2_ste(latent)]


def _packed_linear() -> List[torch.Tensor]:  # 4 rows x 512 x 1024: past the packed linear's threshold
    layer = ShiftLinear(512, 1024).eval()
    with torch.no_grad():
        return [layer(torch.randn(4, 512))]


def _window(op: OpKind) -> List[torch.Tensor]:  # 16 x 256 x 256: past the decoding step's threshold
    with torch.no_grad():
        return [mix_window(torch.randn(16, 256, 256), torch.randn(8, 16), op)]


CASES = {
    "add_mixer_centred": lambda: _mixer(OpKind.ADD, Padding.CENTRED),
    "add_mixer_causal": lambda: _mixer(OpKind.ADD, Padding.CAUSAL),
    "conv_mixer_centred": lambda: _mixer(OpKind.MULT, Padding.CENTRED),
    "conv_mixer_causal": lambda: _mixer(OpKind.MULT, Padding.CAUSAL),
    "add_linear": _adder,
    "add_conv": lambda: _add_conv(1),
    "add_conv_depthwise": lambda: _add_conv(8),
    "add_conv_inference": _add_conv_inference,
    "shift_weights": _shift_weights,
    "packed_shift_linear": _packed_linear,
    "add_window": lambda: _window(OpKind.ADD),
    "conv_window": lambda: _window(OpKind.MULT),
}


@pytest.mark.parametrize("run", CASES.values(), ids=list(CASES))
def test_kernels_give_the_same_results_on_several_threads(kernels_built, run):
    single, several = _on_threads(run, 1), _on_threads(run, 3)
    assert len(single) == len(several)
    for one, many in zip(single, several):
        assert torch.equal(one, many)
