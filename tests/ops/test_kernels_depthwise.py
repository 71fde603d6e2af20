"""Direct depthwise and mixer kernels (fairseq_shiftadd.ops.kernels.cpu_depthwise, cpu_mixer) and the product mixer's
paths where they do not run (band matrix, conv1d), against the reference paths."""
import pytest
import torch
from torch.testing import assert_close

from _kernel_paths import on_both_paths
from fairseq_shiftadd.ops.adder import AddConv2d, GradNorm
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.ops.kernels import cpu_mixer, dispatch
from fairseq_shiftadd.ops.kernels.cpu_depthwise import depthwise_supported
from fairseq_shiftadd.ops.lightconv import LightweightAdd, LightweightConv, Padding, lightweight_mix, mix_window

F64 = torch.float64


@pytest.fixture
def kernels_built():
    if not depthwise_supported(torch.zeros(1)):
        pytest.skip("the CPU kernels did not build here (no g++?): only the reference path runs")


GEOMETRIES = {
    "pad1": dict(kernel_size=3, padding=1),
    "stride_dilation": dict(kernel_size=(3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3)),
    "no_pad_5x5": dict(kernel_size=5, stride=(1, 3)),
    "unit_stride_dilated": dict(kernel_size=(2, 3), padding=(1, 2), dilation=(3, 2)),  # the flat kernels
}


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=list(GEOMETRIES))
@pytest.mark.parametrize("eta", [None, 0.2])
def test_depthwise_add_conv_matches_reference(kernels_built, monkeypatch, geometry, eta):
    torch.manual_seed(0)
    layer = AddConv2d(5, 5, groups=5, eta=eta, bias=True, **geometry).double()
    x = torch.randn(3, 5, 11, 13, dtype=F64)

    def run():
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        y = layer(xi)
        y.backward(torch.sin(y))
        return y, xi.grad, layer.weight.grad.clone(), layer.bias.grad.clone()

    for fast, slow in zip(*on_both_paths(monkeypatch, run)):
        assert_close(fast, slow, rtol=1e-9, atol=1e-9)


SEQUENCES = {  # T, B, C, H, K
    "narrow": (9, 3, 12, 4, 5),  # fewer channels than a vector: scalar lanes only
    "ragged": (6, 2, 90, 3, 7),  # blocks of vectors, single vectors and scalar lanes
    "long_ragged": (19, 2, 90, 3, 7),  # and the kernels' blocks of 8 rows, then single rows
    "all_row_blocks": (22, 2, 40, 4, 7),  # blocks of 8 rows, then of 4, then single rows
    "short_blocks_of_8": (12, 2, 40, 4, 7),  # the forward's blocks of 8 rows, then of 4 (the kernel fits the length)
    "padding_taps": (8, 2, 40, 4, 15),  # blocks of 4 rows (a short sequence) whose outer taps meet padding only
    "shorter_than_kernel": (3, 2, 40, 5, 9),  # every output meets both borders
    "past_band_length": (131, 1, 20, 4, 5),  # longer than the band product's 128 (the GPU's conv1d there)
}


@pytest.mark.parametrize("op", [OpKind.MULT, OpKind.ADD], ids=["mult", "add"])
@pytest.mark.parametrize("padding", list(Padding), ids=[p.value for p in Padding])
@pytest.mark.parametrize("grad_norm", list(GradNorm), ids=[g.value for g in GradNorm])
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("sizes", SEQUENCES.values(), ids=list(SEQUENCES))
def test_lightweight_mix_fast_paths_match_reference(kernels_built, monkeypatch, op, padding, grad_norm, dtype, sizes):
    torch.manual_seed(1)
    length, batch, channels, heads, taps = sizes
    x, kernel = torch.randn(length, batch, channels, dtype=dtype), torch.randn(heads, taps, dtype=dtype)

    def run():
        xi, ki = x.clone().requires_grad_(), kernel.clone().requires_grad_()
        y = lightweight_mix(xi, ki, op, padding, eta=0.3, grad_norm=grad_norm)
        y.backward(torch.cos(y))
        return y, xi.grad, ki.grad

    tolerance = dict(rtol=1e-9, atol=1e-9) if dtype is F64 else dict(rtol=1e-5, atol=1e-5)
    for fast, slow in zip(*on_both_paths(monkeypatch, run)):
        assert fast.dtype == dtype
        assert_close(fast, slow, **tolerance)


@pytest.mark.parametrize("padding", list(Padding), ids=[p.value for p in Padding])
@pytest.mark.parametrize("sizes", SEQUENCES.values(), ids=list(SEQUENCES))
def test_product_mixer_without_the_direct_kernel_matches_reference(kernels_built, monkeypatch, padding, sizes):
    """Where the direct kernel does not run (CUDA tensors, a CPU without a compiler) the product mixer takes fairseq's
    band-matrix product up to 128 positions and a depthwise conv1d past them: both on CPU tensors here."""
    monkeypatch.setattr(dispatch, "product_mix", lambda *args: None)
    torch.manual_seed(6)
    length, batch, channels, heads, taps = sizes
    x, kernel = torch.randn(length, batch, channels, dtype=F64), torch.randn(heads, taps, dtype=F64)

    def run():
        xi, ki = x.clone().requires_grad_(), kernel.clone().requires_grad_()
        y = lightweight_mix(xi, ki, OpKind.MULT, padding)
        y.backward(torch.cos(y))
        return y, xi.grad, ki.grad

    for fast, slow in zip(*on_both_paths(monkeypatch, run)):
        assert_close(fast, slow, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_product_mixer_runs_on_the_cpu_kernel_at_every_length(kernels_built, monkeypatch, dtype):
    """On CPU the conv mixer's sums and gradients come from the direct kernel, short sequences (where fairseq and a GPU
    take the band product) and long (a depthwise conv1d) alike."""
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")
    calls = []
    monkeypatch.setattr(cpu_mixer, "product_mix",
                        lambda *args, mix=cpu_mixer.product_mix: calls.append(args[0].size(0)) or mix(*args))
    kernel = torch.randn(4, 7, dtype=dtype, requires_grad=True)
    for length in (8, 200):
        y = lightweight_mix(torch.randn(length, 2, 16, dtype=dtype), kernel, OpKind.MULT, Padding.CENTRED)
        assert y.dtype == dtype
        y.sum().backward()
    assert calls == [8, 200] and kernel.grad.dtype == dtype


@pytest.mark.parametrize("offset", [0.0, 50.0], ids=["centred_x", "offset_x"])
def test_add_mixer_forward_keeps_float32_precision_with_softmax_kernels(kernels_built, monkeypatch, offset):
    """With the models' softmax-normalised kernels the kernel's float32 outputs stay within a few roundings of the
    float64 truth, also where x carries a large offset (a faster form, 2 min(x, w) - x - w, passed this too but
    was not kept: see docs/kernels-history.md, the mixers against fairseq)."""
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")
    torch.manual_seed(4)
    x, kernel = offset + torch.randn(40, 3, 64), torch.softmax(torch.randn(4, 31), dim=-1)
    with torch.no_grad():
        fast = lightweight_mix(x, kernel, OpKind.ADD, Padding.CENTRED)
        truth = lightweight_mix(x.double(), kernel.double(), OpKind.ADD, Padding.CENTRED)
    assert ((fast.double() - truth).abs() / truth.abs()).max() < 16 * torch.finfo(torch.float32).eps


@pytest.mark.parametrize("op", [OpKind.ADD, OpKind.MULT], ids=["add", "mult"])
@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16], ids=["f64", "f32", "bf16"])
@pytest.mark.parametrize("sizes", SEQUENCES.values(), ids=list(SEQUENCES))
def test_decoding_step_kernel_matches_reference(kernels_built, monkeypatch, op, dtype, sizes):
    """The window kernel (both mixing primitives) against the broadcast sums of the reference step."""
    torch.manual_seed(3)
    _, batch, channels, heads, taps = sizes
    window, kernel = torch.randn(taps, batch, channels, dtype=dtype), torch.randn(heads, taps, dtype=dtype)
    calls = []
    monkeypatch.setattr(cpu_mixer, "mix_window", lambda *args, mix=cpu_mixer.mix_window: calls.append(1) or mix(*args))
    (fast,), (slow,) = on_both_paths(monkeypatch, lambda: [mix_window(window, kernel, op)])
    assert calls == [1]  # the fast run took the kernel, the reference run did not
    assert fast.shape == (1, batch, channels) and fast.dtype == dtype
    if dtype is torch.bfloat16:  # the reference rounds each bf16 product; the kernel sums in float32, so: the truth
        slow = mix_window(window.to(F64), kernel.to(F64), op).to(dtype)
    tolerance = {F64: 1e-9, torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]  # both rounded to bf16 once
    assert_close(fast, slow, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("mixer", [LightweightAdd, LightweightConv], ids=["add", "conv"])
@pytest.mark.parametrize("length, taps", [(19, 7), (22, 7), (12, 7), (9, 15)],
                         ids=["blocks_of_8_then_single_rows", "blocks_of_8_4_1", "short_blocks_of_8_then_4",
                              "short_blocks_of_4_padding_taps"])
def test_causal_mixer_steps_reproduce_the_forward_bit_for_bit(kernels_built, monkeypatch, mixer, length, taps):
    """The decoding step's window kernel gives every position the sums the whole-sequence kernel gives it, in the same
    order, whatever the position's place in the forward's blocks of rows (and where a block's taps all meet the
    padding): a quantised model then decodes incrementally exactly as it scores a whole sequence
    (tests/models/test_qat.py)."""
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")
    torch.manual_seed(5)
    layer = mixer(90, taps, 3, padding=Padding.CAUSAL).eval()
    x = torch.randn(length, 2, 90)  # ragged channels
    with torch.no_grad():
        whole, buffer, steps = layer(x), None, []
        for t in range(x.size(0)):
            y, buffer = layer.step(x[t:t + 1], buffer)
            steps.append(y)
    assert torch.equal(torch.cat(steps), whole)


@pytest.mark.parametrize("mixer", [LightweightAdd, LightweightConv], ids=["add", "conv"])
def test_lightweight_mixer_bfloat16_matches_float32(kernels_built, monkeypatch, mixer):
    monkeypatch.setenv("FAIRSEQ_SHIFTADD_KERNELS", "")
    torch.manual_seed(2)
    layer = mixer(16, 7, 4)
    x = torch.randn(10, 2, 16)
    full = layer(x)
    half = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert_close(half.float(), full, rtol=2e-2, atol=2e-2 * full.abs().max().item())
