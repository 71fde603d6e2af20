"""Fake quantisation: grids, straight-through gradients, running ranges, validation."""
import pytest
import torch

from fairseq_shiftadd.ops.quant import (
    ActivationFakeQuant,
    QuantConfig,
    RunningRange,
    check_bits,
    fake_quant_affine,
    fake_quant_symmetric,
    quantize_weight,
)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_symmetric_values_on_grid_and_clipped_ste(bits: int) -> None:
    x = torch.linspace(-2, 2, 101, dtype=torch.float64, requires_grad=True)
    y = fake_quant_symmetric(x, torch.tensor(1.0), bits)
    qmax = 2 ** (bits - 1) - 1
    levels = y.detach() * qmax
    torch.testing.assert_close(levels, levels.round())
    assert levels.abs().max() <= qmax
    y.sum().backward()
    inside = (x.detach().abs() <= 1.0).double()
    torch.testing.assert_close(x.grad, inside)


def test_symmetric_rounding_error_at_most_half_step() -> None:
    x = torch.rand(1000, dtype=torch.float64) * 2 - 1
    y = fake_quant_symmetric(x, torch.tensor(1.0), 8)
    assert (y - x).abs().max() <= 0.5 / 127 + 1e-12


def test_affine_represents_zero_exactly_and_range_ends() -> None:
    x = torch.tensor([-0.3, 0.0, 0.2, 1.7])
    y = fake_quant_affine(x, torch.tensor(-0.3), torch.tensor(1.7), 8)
    assert y[1] == 0.0
    torch.testing.assert_close(y[[0, 3]], x[[0, 3]], atol=2.0 / 255, rtol=0)
    assert len(torch.unique(fake_quant_affine(torch.rand(10000), torch.tensor(0.0), torch.tensor(1.0), 3))) <= 8


def test_weight_per_channel_scales_each_row() -> None:
    w = torch.randn(4, 16) * torch.tensor([[0.01], [0.1], [1.0], [10.0]])
    q = quantize_weight(w, QuantConfig(bits=8, per_channel=True))
    row_max = w.abs().amax(1, keepdim=True)
    torch.testing.assert_close((q / row_max * 127), (q / row_max * 127).round(), atol=1e-3, rtol=0)
    per_tensor = quantize_weight(w, QuantConfig(bits=8, per_channel=False))
    assert (per_tensor[0] == 0).all()  # the tiny row vanishes with one tensor-wide scale
    assert not (q[0] == 0).all()


def test_running_range_ema_in_training_frozen_in_eval() -> None:
    tracker = RunningRange(momentum=0.5)
    tracker.train()
    tracker(torch.tensor([-1.0, 1.0]))
    tracker(torch.tensor([-3.0, 3.0]))
    assert tracker.low.item() == -2.0 and tracker.high.item() == 2.0
    tracker.eval()
    low, high = tracker(torch.tensor([-100.0, 100.0]))
    assert low.item() == -2.0 and high.item() == 2.0


def test_activation_quant_disabled_is_identity_and_enabled_quantises() -> None:
    x = torch.randn(3, 5)
    assert ActivationFakeQuant(None)(x) is x
    quant = ActivationFakeQuant(QuantConfig(bits=4))
    y = quant(x)
    assert len(torch.unique(y)) <= 16


@pytest.mark.parametrize("bad", [1, 17, 8.0, True, "8"])
def test_bad_bits_name_the_argument(bad) -> None:
    with pytest.raises(ValueError, match="bits"):
        QuantConfig(bits=bad)
    with pytest.raises(ValueError, match="weight_bits"):
        check_bits("weight_bits", bad)


def test_bad_momentum() -> None:
    with pytest.raises(ValueError, match="momentum"):
        QuantConfig(momentum=0.0)
