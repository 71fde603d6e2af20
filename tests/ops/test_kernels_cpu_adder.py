"""The compiled CPU adder kernels (fairseq_shiftadd.ops.kernels) against the reference path and the formulas."""
import warnings

import pytest
import torch
from torch.testing import assert_close

from _kernel_paths import layer_step, on_both_paths
from fairseq_shiftadd.ops.adder import AddConv2d, add_matmul
from fairseq_shiftadd.ops.kernels import build, cpu_adder

F64 = torch.float64
# (G, N, M, K): ragged everywhere (no size a multiple of a register block); M = 1 and 5 take the few-rows
# kernels, 17+ the register-panel ones; K = 600 spans two K blocks of the forward
SHAPES = {"dense": (1, 37, 41, 53), "groups": (3, 13, 70, 129), "few_rows": (2, 100, 5, 9),
          "one_row": (4, 19, 1, 31), "long_k": (1, 7, 17, 600)}


@pytest.fixture
def kernels_built():
    if not cpu_adder.cpu_supported(torch.zeros(1)):
        pytest.skip("the CPU adder kernels did not build here (no g++?): only the reference path runs")


def _run(x, w, g, centre, eta, reference, monkeypatch):
    """add_matmul's output and both gradients, on the fast path or (``reference``) the reference path."""
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference" if reference else "")
    xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = add_matmul(xi, wi, eta=eta, centre_outputs=centre)
    y.backward(g)
    return y.detach(), xi.grad, wi.grad


def _naive(x, w, g, centre):
    """Forward and input gradient written out with the N x M x K tensor (float64)."""
    diff = x[:, :, None, :] - w[:, None, :, :]
    y = -diff.abs().sum(-1)
    if centre:
        y, g = y - y.mean(-1, keepdim=True), g - g.mean(-1, keepdim=True)
    return y, (g[..., None] * (-diff).clamp(-1.0, 1.0)).sum(-2)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
@pytest.mark.parametrize("centre", [False, True], ids=["plain", "centred"])
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
def test_fast_path_matches_reference_and_formula(kernels_built, monkeypatch, shape, centre, dtype):
    groups, rows, cols, length = shape
    torch.manual_seed(0)
    x, w, g = torch.randn(groups, rows, length, dtype=F64), torch.randn(groups, cols, length, dtype=F64), \
        torch.randn(groups, rows, cols, dtype=F64)
    fast = _run(x.to(dtype), w.to(dtype), g.to(dtype), centre, 0.2, False, monkeypatch)
    slow = _run(x.to(dtype), w.to(dtype), g.to(dtype), centre, 0.2, True, monkeypatch)
    tolerance = dict(rtol=1e-9, atol=1e-9) if dtype is F64 else dict(rtol=1e-4, atol=1e-4 * length ** 0.5)
    for a, b in zip(fast, slow):
        assert a.dtype == dtype
        assert_close(a, b, **tolerance)
    y, dx = _naive(x, w, g, centre)
    assert_close(fast[0].double(), y, **tolerance)
    assert_close(fast[1].double(), dx, **tolerance)


@pytest.mark.parametrize("name", ["dense", "groups", "one_row"])
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
def test_input_gradient_where_terms_saturate(kernels_built, monkeypatch, name, dtype):
    # inputs spread 10x wider than the weights (most terms clamp to +-1; many inputs lie beyond every weight of
    # their column, where the kernel clamps x to the weights' range +- 1 before forming its terms)
    groups, rows, cols, length = SHAPES[name]
    torch.manual_seed(2)
    x, w = 4.0 * torch.randn(groups, rows, length, dtype=F64), 0.4 * torch.randn(groups, cols, length, dtype=F64)
    g = torch.randn(groups, rows, cols, dtype=F64)
    assert ((x > w.amax(dim=1, keepdim=True) + 1) | (x < w.amin(dim=1, keepdim=True) - 1)).double().mean() > 0.5
    _, dx, _ = _run(x.to(dtype), w.to(dtype), g.to(dtype), False, 0.2, False, monkeypatch)
    tolerance = dict(rtol=1e-9, atol=1e-9) if dtype is F64 else dict(rtol=1e-4, atol=1e-4 * cols ** 0.5)
    assert_close(dx.double(), _naive(x, w, g, False)[1], **tolerance)


@pytest.mark.parametrize("shape", [SHAPES["dense"], SHAPES["one_row"]], ids=["dense", "one_row"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_half_inputs_accumulate_in_float32(kernels_built, monkeypatch, shape, dtype):
    # the kernels see float32 copies and round each result once: within a half ulp of the float64 truth
    # computed from the same (rounded) inputs
    groups, rows, cols, length = shape
    torch.manual_seed(1)
    x, w = torch.randn(groups, rows, length).to(dtype), torch.randn(groups, cols, length).to(dtype)
    g = torch.randn(groups, rows, cols).to(dtype)
    for centre in (False, True):
        y, dx, _ = _run(x, w, g, centre, 0.2, False, monkeypatch)
        assert y.dtype == dx.dtype == dtype
        y_true, dx_true = _naive(x.double(), w.double(), g.double(), centre)
        ulp = torch.finfo(dtype).eps
        assert_close(y.double(), y_true, rtol=ulp, atol=ulp * y_true.abs().max().item())
        assert_close(dx.double(), dx_true, rtol=ulp, atol=ulp * dx_true.abs().max().item())


@pytest.mark.parametrize("groups", [1, 2, 6], ids=["dense", "grouped", "depthwise"])
def test_add_conv2d_fast_path_matches_reference(kernels_built, monkeypatch, groups):
    torch.manual_seed(2)
    layer = AddConv2d(6, 6, 3, padding=1, stride=(1, 2), groups=groups).double()
    x = torch.randn(3, 6, 7, 9, dtype=F64)
    for a, b in zip(*on_both_paths(monkeypatch, lambda: layer_step(layer, x))):
        assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_reference_switch_turns_the_fast_path_off(monkeypatch):
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference")
    assert not cpu_adder.cpu_supported(torch.zeros(1))


def test_unsupported_dtype_uses_the_reference(kernels_built):
    assert not cpu_adder.cpu_supported(torch.zeros(1, dtype=torch.complex64))


def test_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "COMPILER", "no-such-compiler-for-this-test")
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNEL_CACHE", str(tmp_path))
    build.load_library.cache_clear()
    cpu_adder.KERNELS.reset()
    try:
        with pytest.warns(RuntimeWarning, match="no-such-compiler-for-this-test.*reference PyTorch path") as record:
            assert not cpu_adder.cpu_supported(torch.zeros(1))
            x, w = torch.randn(1, 5, 7, dtype=F64), torch.randn(1, 9, 7, dtype=F64)
            y = add_matmul(x, w)  # the reference path, and no second warning
        assert len(record) == 1
        assert_close(y, -(x[:, :, None] - w[:, None]).abs().sum(-1))
        assert list(tmp_path.iterdir()) == []  # nothing half-built left behind
    finally:
        build.load_library.cache_clear()
        cpu_adder.KERNELS.reset()


def test_build_is_cached_per_machine(monkeypatch, tmp_path):
    if not cpu_adder.cpu_supported(torch.zeros(1)):
        pytest.skip("no compiler here: nothing to cache")
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNEL_CACHE", str(tmp_path))
    build.load_library.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert build.load_library(cpu_adder._SOURCE) is not None
        built = list(tmp_path.glob("cpu_adder-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        build.load_library.cache_clear()
        monkeypatch.setattr(build, "_build", None)  # a rebuild would fail
        assert build.load_library(cpu_adder._SOURCE) is not None
        assert built[0].stat().st_mtime_ns == stamp
    finally:
        build.load_library.cache_clear()


CONVS = {
    "dense": dict(in_channels=5, out_channels=37, kernel_size=3, padding=1),
    "grouped_strided_dilated": dict(in_channels=6, out_channels=34, kernel_size=(3, 2), stride=(2, 1),
                                    padding=(1, 2), dilation=(2, 1), groups=2),
    "few_out": dict(in_channels=4, out_channels=3, kernel_size=2, stride=(1, 3)),
}


@pytest.mark.parametrize("geometry", CONVS.values(), ids=list(CONVS))
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
def test_add_conv2d_inference_by_implicit_im2col_matches_reference(kernels_built, monkeypatch, geometry, dtype):
    torch.manual_seed(3)
    layer = AddConv2d(**geometry, bias=True).to(dtype)
    x = torch.randn(2, geometry["in_channels"], 9, 11, dtype=dtype) + 2.0  # an offset the centring must undo
    with torch.no_grad():
        monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")
        fast = layer(x)
        monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference")
        slow = layer(x)
    tolerance = dict(rtol=1e-9, atol=1e-9) if dtype is F64 else dict(rtol=1e-5, atol=1e-4)
    assert_close(fast, slow, **tolerance)


@pytest.fixture
def preparations(monkeypatch):
    """Counts cpu_adder.prepare (the forward's weight-only work) and the kernel forwards that were handed one."""
    calls = {"prepare": 0, "handed": 0}

    def prepare(*args, run=cpu_adder.prepare):
        calls["prepare"] += 1
        return run(*args)

    def neg_l1(x, weight, centred, prepared=None, run=cpu_adder.neg_l1):
        calls["handed"] += prepared is not None
        return run(x, weight, centred, prepared)

    monkeypatch.setattr(cpu_adder, "prepare", prepare)
    monkeypatch.setattr(cpu_adder, "neg_l1", neg_l1)
    return calls


def test_add_linear_prepares_its_weight_once_at_inference(kernels_built, preparations, monkeypatch):
    from fairseq_shiftadd.ops.adder import AddLinear

    torch.manual_seed(4)
    layer, x = AddLinear(40, 70, bias=True).eval(), torch.randn(2, 5, 40)
    with torch.no_grad():
        first, second = layer(x), layer(x)
    assert preparations == {"prepare": 1, "handed": 2} and torch.equal(first, second)
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "reference")
    with torch.no_grad():
        assert_close(first, layer(x))
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer(x).square().sum().backward()  # autograd: prepared per call, none kept
    optimizer.step()
    assert preparations == {"prepare": 2, "handed": 2}
    with torch.no_grad():
        stepped = layer(x)  # the weight's version moved: prepared again
        layer.double()  # a new storage through .data, the version unchanged: prepared again
        assert_close(layer(x.double()), stepped.double())
    assert preparations == {"prepare": 4, "handed": 4}
    assert not torch.equal(stepped, first)


def test_add_slot_keeps_its_scaled_weight_per_slice(kernels_built, preparations):
    from fairseq_shiftadd.models.sharing import SlotUser, WeightSlot
    from fairseq_shiftadd.ops.kernels.weight_cache import caching_disabled
    from fairseq_shiftadd.ops.kinds import OpKind

    torch.manual_seed(5)
    slot = WeightSlot({"add": SlotUser(OpKind.ADD, (48, 40)), "mult": SlotUser(OpKind.MULT, (48, 40))}, "shared")
    x = torch.randn(3, 24)
    with torch.no_grad():
        narrow = [slot.linear(x, "add", 20) for _ in range(2)]
        wide = slot.linear(x, "add", 48)
        assert preparations == {"prepare": 2, "handed": 3}  # once per slice shape
        with caching_disabled():
            assert_close(narrow[0], slot.linear(x, "add", 20))
            assert_close(wide, slot.linear(x, "add", 48))
    assert torch.equal(narrow[0], narrow[1]) and preparations["handed"] == 3
