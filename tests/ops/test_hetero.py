"""Tests of heterogeneous weight sharing (fairseq_shiftadd.ops.hetero)."""
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from fairseq_shiftadd.ops.adder import add_matmul
from fairseq_shiftadd.ops.hetero import (
    PiecewiseLinearRemap,
    SharedWeight,
    SharingMode,
    excess_kurtosis,
    laplace_regulariser,
)
from fairseq_shiftadd.ops.kernels.weight_cache import caching_disabled
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.ops.shift import exponent_range, round_pow2_ste

F64 = torch.float64
ALL_OPS = (OpKind.MULT, OpKind.SHIFT, OpKind.ADD)


def naive_remap(w: torch.Tensor, scales: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """T(w) = lo + sum_i s_i * |[lo, w] overlap bin i| (w in [lo, hi]), by an explicit sum over bins."""
    bins = scales.numel()
    edges = torch.linspace(lo, hi, bins + 1, dtype=F64)
    overlap = (torch.minimum(w[..., None], edges[1:]) - edges[:-1]).clamp_min(0.0)
    return lo + (scales * overlap).sum(-1)


def randomised_remap(num_bins: int = 7, seed: int = 0) -> PiecewiseLinearRemap:
    remap = PiecewiseLinearRemap(num_bins).double()
    with torch.no_grad():
        remap.log_scale.copy_(torch.randn(num_bins, dtype=F64, generator=torch.Generator().manual_seed(seed)))
    return remap


def assert_signed_pow2(w: torch.Tensor, low: int, high: int) -> None:
    nonzero = w[w != 0]
    mantissa, exponent = torch.frexp(nonzero)  # |mantissa| in [0.5, 1)
    assert bool((mantissa.abs() == 0.5).all())
    assert low <= int(exponent.min()) - 1 and int(exponent.max()) - 1 <= high


def randomise_remaps(module: SharedWeight, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for remap in module.remaps.values():
            remap.log_scale.copy_(0.5 * torch.randn(remap.num_bins, generator=generator))


# --- PiecewiseLinearRemap --------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_remap_is_exactly_identity_at_init(shape, dtype):
    remap = PiecewiseLinearRemap(100).to(dtype)
    w = torch.randn(shape, dtype=dtype)
    assert torch.equal(remap(w), w)
    outside = torch.tensor([-5.0, 0.1, 7.0], dtype=dtype)
    bounds = (torch.tensor(-1.0, dtype=dtype), torch.tensor(1.0, dtype=dtype))
    assert torch.equal(remap(outside, bounds=bounds), outside)


def test_remap_matches_sum_over_bins_formula():
    remap = randomised_remap(7)
    w = torch.randn(40, 3, dtype=F64)
    lo, hi = float(w.min()), float(w.max())
    assert_close(remap(w), naive_remap(w, remap.scales.detach(), lo, hi))
    # endpoints: T(lo) = lo, T(hi) = lo + h * sum(s)
    ends = remap(torch.tensor([lo, hi], dtype=F64), bounds=(torch.tensor(lo, dtype=F64), torch.tensor(hi, dtype=F64)))
    assert_close(ends, torch.tensor([lo, lo + (hi - lo) / 7 * float(remap.scales.detach().sum())], dtype=F64))


def test_remap_is_continuous_at_bin_edges_and_slope_one_outside():
    remap = randomised_remap(5)
    bounds = (torch.tensor(-1.0, dtype=F64), torch.tensor(1.5, dtype=F64))
    edges = torch.linspace(-1.0, 1.5, 6, dtype=F64)
    eps = 1e-9
    assert_close(remap(edges - eps, bounds), remap(edges + eps, bounds), atol=1e-8, rtol=0)
    below, above = torch.tensor([-3.0, -2.0], dtype=F64), torch.tensor([2.0, 4.0], dtype=F64)
    assert_close(remap(below, bounds), below)
    top = remap(bounds[1].reshape(1), bounds)
    assert_close(remap(above, bounds), top + (above - 1.5))


def test_remap_gradients_match_formula_and_gradcheck():
    remap = randomised_remap(6)
    bounds = (torch.tensor(-2.0, dtype=F64), torch.tensor(2.0, dtype=F64))
    w = (torch.rand(30, dtype=F64) * 3.8 - 1.9).requires_grad_()
    out = remap(w, bounds)
    g = torch.randn(30, dtype=F64)
    out.backward(g)
    h = 4.0 / 6
    index = ((w.detach() + 2.0) / h).floor().long()
    scales = remap.scales.detach()
    assert_close(w.grad, g * scales[index])  # dT/dw = s_j
    edges = -2.0 + h * torch.arange(6, dtype=F64)
    overlap = (w.detach()[:, None] - edges).clamp(0.0, h)
    assert_close(remap.log_scale.grad, scales * (g[:, None] * overlap).sum(0))  # dT/dlog s_i = s_i * overlap_i

    def call(values, log_scale):
        return functional_call(remap, {"log_scale": log_scale}, (values, bounds))

    inputs = (w.detach().clone().requires_grad_(), remap.log_scale.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(call, inputs)


def test_remap_stays_monotone_after_training():
    torch.manual_seed(0)
    remap = PiecewiseLinearRemap(50)
    w = torch.randn(2000)
    target = torch.randn(2000) * 3  # unrelated targets push slopes up and down hard
    optimiser = torch.optim.Adam(remap.parameters(), lr=0.5)
    for _ in range(30):
        optimiser.zero_grad()
        (remap(w) - target).square().mean().backward()
        optimiser.step()
    assert remap.log_scale.detach().std() > 0.5  # the slopes really moved
    assert bool((remap.scales > 0).all())
    grid = torch.linspace(float(w.min()), float(w.max()), 20001)
    mapped = remap(grid, remap.bounds(w)).detach()
    assert float(mapped.diff().min()) >= -1e-6 * float(mapped.abs().max())


def test_remap_commutes_with_slicing():
    remap = randomised_remap(9)
    w = torch.randn(8, 6, dtype=F64)
    full = remap(w)
    assert torch.equal(full[:5, :4], remap(w[:5, :4], bounds=remap.bounds(w)))
    assert not torch.equal(full[:5, :4], remap(w[:5, :4]))  # own bounds differ: hence full-weight bounds


@pytest.mark.parametrize("num_bins", [0, -3, 2.5, True])
def test_remap_rejects_bad_num_bins(num_bins):
    with pytest.raises(ValueError, match="num_bins"):
        PiecewiseLinearRemap(num_bins)


def test_remap_of_constant_tensor_is_identity():
    remap = randomised_remap(4)
    w = torch.full((3, 2), 0.25, dtype=F64)
    assert torch.equal(remap(w), w)


# --- laplace_regulariser, excess_kurtosis -----------------------------------------------------


def test_regulariser_hand_value_and_gradient():
    # n = 2: quantiles of Laplace(0, 1) at 1/4 and 3/4 are -+ln 2.
    values = torch.tensor([1.0, -1.0], dtype=F64, requires_grad=True)
    loss = laplace_regulariser(values, scale=1.0)
    assert_close(loss, torch.tensor((1 - math.log(2)) ** 2, dtype=F64))
    loss.backward()
    assert_close(values.grad, torch.tensor([1 - math.log(2), -(1 - math.log(2))], dtype=F64))  # 2 (v/b - q) / (n b)
    doubled = laplace_regulariser(2 * values.detach(), scale=2.0)
    assert_close(doubled, loss.detach())  # R is W2^2 / b^2


def test_regulariser_separates_laplace_from_gaussian_of_same_variance():
    torch.manual_seed(0)
    n, b = 100_000, 2.0
    laplace = torch.distributions.Laplace(0.0, b).sample((n,))
    gaussian = torch.randn(n) * b * math.sqrt(2.0)
    assert float(laplace_regulariser(laplace, b)) < 2e-3
    assert float(laplace_regulariser(gaussian, b)) > 0.05
    assert float(laplace_regulariser(laplace.reshape(100, -1), b)) == float(laplace_regulariser(laplace, b))
    # the target's scale matters: a Laplace sample of another scale is penalised
    assert float(laplace_regulariser(laplace / 10, b)) > 0.5
    # scale=None fits b = mean|v|: only the shape counts
    assert float(laplace_regulariser(laplace / 10, None)) < 2e-3
    assert float(laplace_regulariser(gaussian * 0.01, None)) > 0.05


def test_regulariser_trains_a_remap_toward_laplacian_shape():
    torch.manual_seed(0)
    w = torch.randn(10_000) * 0.05
    remap = PiecewiseLinearRemap(100)
    optimiser = torch.optim.Adam(remap.parameters(), lr=0.05)
    losses = []
    for _ in range(150):
        optimiser.zero_grad()
        loss = laplace_regulariser(remap(w), None)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert excess_kurtosis(w).item() < 0.3 and excess_kurtosis(remap(w)).item() > 2.0


@pytest.mark.parametrize("scale", [0.0, -1.0, float("inf"), float("nan"), True, "2"])
def test_regulariser_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        laplace_regulariser(torch.randn(5), scale)


def test_regulariser_rejects_empty_values():
    with pytest.raises(ValueError, match="values"):
        laplace_regulariser(torch.empty(0))


def test_excess_kurtosis_of_known_distributions():
    torch.manual_seed(0)
    n = 1_000_000
    assert abs(float(excess_kurtosis(torch.randn(n, dtype=F64)))) < 0.05
    assert abs(float(excess_kurtosis(torch.distributions.Laplace(0.0, 2.0).sample((n,)).double())) - 3.0) < 0.15
    assert abs(float(excess_kurtosis(torch.rand(n, dtype=F64))) + 1.2) < 0.02
    assert_close(excess_kurtosis(torch.tensor([-1.0, 1.0], dtype=F64)), torch.tensor(-2.0, dtype=F64))


# --- SharedWeight ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, ops, expected",
    [
        (SharingMode.NONE, ALL_OPS, 3 * 48),
        (SharingMode.NONE, (OpKind.MULT, OpKind.ADD), 2 * 48),
        (SharingMode.SHARED, ALL_OPS, 48),
        (SharingMode.HETEROGENEOUS, ALL_OPS, 48 + 2 * 10),
        (SharingMode.HETEROGENEOUS, (OpKind.MULT, OpKind.ADD), 48 + 10),
        (SharingMode.HETEROGENEOUS, (OpKind.MULT,), 48),
    ],
)
def test_parameter_counts_per_mode(mode, ops, expected):
    module = SharedWeight((8, 6), ops, mode, num_bins=10)
    assert module.num_parameters() == expected == sum(p.numel() for p in module.parameters())


def test_none_mode_has_independent_weights():
    module = SharedWeight((8, 6), ALL_OPS, "none")
    mult, add = module.weight_for(OpKind.MULT), module.weight_for(OpKind.ADD)
    assert not torch.equal(mult, add)
    add.sum().backward()
    assert module.weights["mult"].grad is None and module.weights["shift"].grad is None
    assert torch.equal(module.weights["add"].grad, torch.ones(8, 6))
    assert torch.equal(module.weight_for("shift"), round_pow2_ste(module.weights["shift"].detach()))
    assert module.regulariser().item() == 0.0


def test_shared_mode_reads_one_parameter():
    module = SharedWeight((8, 6), ALL_OPS, "shared")
    weight = module.weights["shared"]
    assert module.weight_for(OpKind.MULT) is weight and module.weight_for(OpKind.ADD) is weight
    assert torch.equal(module.weight_for(OpKind.SHIFT), round_pow2_ste(weight.detach()))
    module.weight_for(OpKind.SHIFT).sum().backward()  # straight-through into the shared weight
    assert torch.equal(weight.grad, torch.ones(8, 6))
    assert module.regulariser().item() == 0.0


def test_heterogeneous_equals_shared_at_init():
    torch.manual_seed(0)
    hetero = SharedWeight((8, 6), ALL_OPS, "heterogeneous")
    shared = SharedWeight((8, 6), ALL_OPS, "shared")
    shared.load_state_dict(hetero.state_dict(), strict=False)
    for op in ALL_OPS:
        assert torch.equal(hetero.weight_for(op), shared.weight_for(op))


def test_heterogeneous_gradient_routing():
    module = SharedWeight((8, 6), ALL_OPS, SharingMode.HETEROGENEOUS)
    randomise_remaps(module)
    weight = module.weights["shared"]
    add_remap, shift_remap = module.remaps["add"], module.remaps["shift"]

    module.weight_for(OpKind.SHIFT).square().sum().backward()  # shift: only its own remap learns
    assert weight.grad is None and add_remap.log_scale.grad is None
    assert float(shift_remap.log_scale.grad.abs().sum()) > 0

    module.zero_grad(set_to_none=True)
    module.weight_for(OpKind.ADD).square().sum().backward()  # add: the weight and its remap
    assert float(weight.grad.abs().sum()) > 0 and float(add_remap.log_scale.grad.abs().sum()) > 0
    assert shift_remap.log_scale.grad is None

    module.zero_grad(set_to_none=True)
    module.weight_for(OpKind.MULT).sum().backward()
    assert torch.equal(weight.grad, torch.ones(8, 6)) and add_remap.log_scale.grad is None


def test_heterogeneous_add_gradient_through_adder_surrogate():
    torch.manual_seed(0)
    module = SharedWeight((5, 4), (OpKind.MULT, OpKind.ADD), "heterogeneous").double()
    x = torch.randn(1, 7, 4, dtype=F64)
    g = torch.randn(1, 7, 5, dtype=F64)
    weight_add = module.weight_for(OpKind.ADD)
    add_matmul(x, weight_add[None], eta=None).backward(g)
    # identity remap: dL/dw = surrogate dL/dT = g^T x - T * sum_n g
    expected = g[0].T @ x[0] - weight_add.detach() * g[0].sum(0)[:, None]
    assert_close(module.weights["shared"].grad, expected)
    assert float(module.remaps["add"].log_scale.grad.abs().sum()) > 0


@pytest.mark.parametrize("mode", list(SharingMode))
@pytest.mark.parametrize("weight_bits", [3, 5])
def test_shift_weights_are_signed_powers_of_two(mode, weight_bits):
    module = SharedWeight((16, 12), ALL_OPS, mode, weight_bits=weight_bits, init=lambda w: nn.init.normal_(w, 0, 0.5))
    randomise_remaps(module)
    assert_signed_pow2(module.weight_for(OpKind.SHIFT).detach(), *exponent_range(weight_bits))


@pytest.mark.parametrize("mode", ["shared", "heterogeneous"])
def test_derived_weights_are_cached_without_autograd_and_follow_updates(mode):
    torch.manual_seed(7)
    sw = SharedWeight((6, 5), ALL_OPS, mode)
    with torch.no_grad():
        for remap in sw.remaps.values():
            remap.log_scale.normal_(0.0, 0.3)
        first = {op: sw.weight_for(op) for op in ALL_OPS}
        with caching_disabled():
            uncached = {op: sw.weight_for(op) for op in ALL_OPS}
        assert all(torch.equal(first[op], uncached[op]) for op in ALL_OPS)
        assert sw.weight_for(OpKind.SHIFT) is first[OpKind.SHIFT]  # the same tensor: not rebuilt
        first = {op: w.clone() for op, w in first.items()}
        for p in sw.parameters():
            p.mul_(1.5)  # an in-place update (optimizer step) of the weight and the remaps
        with caching_disabled():
            updated = {op: sw.weight_for(op) for op in ALL_OPS}
        for op in (OpKind.SHIFT, OpKind.ADD):
            assert torch.equal(sw.weight_for(op), updated[op]) and not torch.equal(updated[op], first[op])
    sw.weight_for(OpKind.SHIFT).sum().backward()  # with autograd: rebuilt, the gradient flows
    assert sw.weight_for(OpKind.SHIFT).requires_grad
    trained = sw.remaps["shift"].log_scale if mode == "heterogeneous" else sw.weights["shared"]
    assert trained.grad is not None and trained.grad.abs().sum() > 0


def test_slicing_commutes_with_the_remap():
    module = SharedWeight((8, 6), ALL_OPS, "heterogeneous")
    randomise_remaps(module)
    weight = module.weights["shared"].detach()
    remap = module.remaps["add"]
    sliced = remap(weight[:5, :3], bounds=remap.bounds(weight))
    assert torch.equal(module.weight_for(OpKind.ADD)[:5, :3], sliced)


def test_regulariser_of_heterogeneous_add_weights():
    module = SharedWeight((32, 16), ALL_OPS, "heterogeneous")
    randomise_remaps(module)
    loss = module.regulariser()  # default: fitted scale (shape only), every element (32 x 16 < max_samples)
    assert_close(loss, laplace_regulariser(module.weight_for(OpKind.ADD), None))
    assert_close(module.regulariser(scale=2.0), laplace_regulariser(module.weight_for(OpKind.ADD), 2.0))
    loss.backward()
    assert float(module.remaps["add"].log_scale.grad.abs().sum()) > 0
    assert module.weights["shared"].grad is None  # the weight the mult candidate reads is left alone
    assert module.remaps["shift"].log_scale.grad is None
    no_add = SharedWeight((32, 16), (OpKind.MULT, OpKind.SHIFT), "heterogeneous")
    assert no_add.regulariser().item() == 0.0


def test_regulariser_subsamples_large_weights():
    module = SharedWeight((300, 300), ALL_OPS, "heterogeneous")
    full = laplace_regulariser(module.weight_for(OpKind.ADD), None)
    torch.manual_seed(0)
    estimate = module.regulariser(max_samples=20000)
    assert abs(estimate.item() - full.item()) < 0.1 * full.item()
    estimate.backward()
    assert module.weights["shared"].grad is None and module.remaps["add"].log_scale.grad is not None


def test_custom_init_is_applied_to_every_weight():
    module = SharedWeight((3, 2), ALL_OPS, "none", init=nn.init.ones_)
    assert all(torch.equal(w, torch.ones(3, 2)) for w in module.weights.values())
    bound = 1.0 / math.sqrt(4 * 3 * 3)
    conv = SharedWeight((8, 4, 3, 3), ALL_OPS, "shared")  # default: U(+-1/sqrt(fan_in)) as nn.Conv2d
    assert conv.weights["shared"].abs().max().item() <= bound


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(mode="hetero"), "mode"),
        (dict(mode=3), "mode"),
        (dict(ops=("mult", "mul")), "ops"),
        (dict(ops=()), "ops"),
        (dict(ops=("add", OpKind.ADD)), "ops"),
        (dict(num_bins=0), "num_bins"),
        (dict(shape=(0, 3)), "shape"),
        (dict(shape=()), "shape"),
        (dict(weight_bits=9), "weight_bits"),
    ],
)
def test_shared_weight_rejects_bad_arguments(kwargs, name):
    arguments = dict(shape=(4, 3), ops=ALL_OPS, mode="shared") | kwargs
    with pytest.raises(ValueError, match=name):
        SharedWeight(**arguments)


def test_weight_for_rejects_ops_outside_the_slot():
    module = SharedWeight((4, 3), (OpKind.MULT, OpKind.ADD), "heterogeneous")
    with pytest.raises(ValueError, match="^op "):
        module.weight_for(OpKind.SHIFT)
    with pytest.raises(ValueError, match="^op "):
        module.weight_for("conv")
