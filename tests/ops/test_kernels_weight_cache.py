"""The shift layers' inference weight cache (fairseq_shiftadd.ops.kernels.weight_cache)."""
import pytest
import torch
from torch.testing import assert_close

from fairseq_shiftadd.ops.shift import ShiftConv2d, ShiftLinear

LAYERS = {
    "linear_ps": lambda: ShiftLinear(5, 3, mode="ps"),
    "linear_q": lambda: ShiftLinear(5, 3, mode="q"),
    "conv_ps": lambda: ShiftConv2d(2, 3, 3, padding=1, mode="ps"),
}
INPUTS = {"linear_ps": (4, 5), "linear_q": (4, 5), "conv_ps": (2, 2, 5, 5)}


def _count_rebuilds(layer, monkeypatch):
    calls = []
    original = type(layer)._clamped_weight

    def counted(self):
        if self is layer:
            calls.append(1)
        return original(self)

    monkeypatch.setattr(type(layer), "_clamped_weight", counted)
    return calls


@pytest.mark.parametrize("name", list(LAYERS))
def test_inference_weight_is_built_once_and_matches_training_path(name, monkeypatch):
    torch.manual_seed(0)
    layer, x = LAYERS[name](), torch.randn(INPUTS[name])
    expected = layer(x)  # autograd on: the uncached path
    calls = _count_rebuilds(layer, monkeypatch)
    layer.eval()
    with torch.no_grad():
        first, second = layer(x), layer(x)
    assert len(calls) == 1
    assert_close(first, expected.detach())
    assert_close(second, expected.detach())


@pytest.mark.parametrize("name", list(LAYERS))
def test_cache_follows_in_place_updates_state_loads_and_mode_changes(name, monkeypatch):
    torch.manual_seed(1)
    layer, x = LAYERS[name](), torch.randn(INPUTS[name])
    calls = _count_rebuilds(layer, monkeypatch)
    layer.eval()
    with torch.no_grad():
        before_step = layer(x)
        next(layer.parameters()).mul_(0.5)  # an optimizer-style in-place step
        assert not torch.equal(layer(x), before_step)
        assert len(calls) == 2
        fresh = LAYERS[name]()
        layer.load_state_dict(fresh.state_dict())
        assert_close(layer(x), fresh.eval()(x))
        assert len(calls) == 3
        next(layer.parameters()).data.mul_(0.5)  # bypasses the version counter...
        layer.train().eval()  # ...which a training loop's mode switches cover
        layer(x)
        assert len(calls) == 4


def test_training_forward_still_clamps_and_backpropagates():
    torch.manual_seed(2)
    layer = ShiftLinear(4, 2, mode="ps")
    with torch.no_grad():
        layer.exponent.fill_(3.0)  # out of range: forward clamps the stored parameter
    layer(torch.randn(3, 4)).sum().backward()
    assert layer.exponent.max().item() <= layer.exponent_max
    assert layer.exponent.grad is not None and layer.sign.grad is not None


def test_weight_cached_in_inference_mode_serves_a_later_backward_to_the_input():
    torch.manual_seed(3)
    layer = ShiftLinear(5, 3, mode="q").eval().requires_grad_(False)  # frozen: autograd records no weight graph
    x = torch.randn(4, 5)
    with torch.inference_mode():
        expected = layer(x)
    x.requires_grad_(True)
    y = layer(x)  # the cached weight is saved for the input gradient: it must not be an inference tensor
    y.sum().backward()
    assert_close(y.detach(), expected)  # the inference call read the packed codes: the same products, another sum order
    assert_close(x.grad, layer.weight.sum(0).expand(4, 5))
