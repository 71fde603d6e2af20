"""Tests of the vision blocks (fairseq_shiftadd.vision.blocks) and the functional adder conv they use."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from fairseq_shiftadd.ops import AddConv2d, OpKind, add_conv2d
from fairseq_shiftadd.vision.blocks import (
    SUPERNET_ADD_ETA,
    ElasticBatchNorm,
    ElasticConv,
    StaticBlock,
    self_attention,
)
from fairseq_shiftadd.vision.space import VisionBlock

F64 = torch.float64


def naive_add_conv(x, w, stride, padding):
    """``-sum |patch - w[o]|`` by explicit loops over output positions (tests only)."""
    x = F.pad(x, (padding,) * 4)
    n, _, h, wd = x.shape
    k = w.shape[-1]
    out = torch.empty(n, w.shape[0], (h - k) // stride + 1, (wd - k) // stride + 1, dtype=x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = x[:, None, :, i * stride: i * stride + k, j * stride: j * stride + k]
            out[:, :, i, j] = -(patch - w[None]).abs().sum(dim=(2, 3, 4))
    return out


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 0)])
def test_add_conv2d_matches_the_formula_and_the_layer(stride, padding):
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 6, 6, dtype=F64), torch.randn(4, 3, 3, 3, dtype=F64)
    assert_close(add_conv2d(x, w, stride, padding), naive_add_conv(x, w, stride, padding))
    layer = AddConv2d(3, 4, 3, stride, padding).double()
    with torch.no_grad():
        layer.weight.copy_(w)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    wb = w.clone().requires_grad_()
    g = torch.randn_like(layer(xa))
    layer(xa).backward(g)
    add_conv2d(xb, wb, stride, padding).backward(g)
    assert_close(xa.grad, xb.grad)
    assert_close(layer.weight.grad, wb.grad)


def test_add_conv2d_rejects_bad_weights_and_inputs():
    with pytest.raises(ValueError, match="weight must be 4-D"):
        add_conv2d(torch.randn(1, 3, 4, 4), torch.randn(4, 27))
    with pytest.raises(ValueError, match=r"x must have shape \(N, in_channels=3, H, W\)"):
        add_conv2d(torch.randn(1, 2, 4, 4), torch.randn(4, 3, 3, 3))


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 1, 1), (1, 1, 3)])
def test_add_conv2d_mult_grad_norm_gives_the_mult_layer_gradient_norm(stride, padding, groups):
    """``grad_norm="mult"``: ``||dw|| = eta * ||g^T x||_F`` (x the unfolded patches), the direction AdderNet's."""
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 6, 6, dtype=F64), torch.randn(3, 3 // groups, 3, 3, dtype=F64)
    wa, wb = w.clone().requires_grad_(), w.clone().requires_grad_()
    g = torch.randn_like(add_conv2d(x, w, stride, padding, groups=groups))
    add_conv2d(x, wa, stride, padding, groups=groups, eta=0.7, grad_norm="mult").backward(g)
    add_conv2d(x, wb, stride, padding, groups=groups, eta=None).backward(g)
    patches = F.unfold(x, 3, padding=padding, stride=stride)  # (N, C*9, L)
    patches = patches.view(patches.shape[0], groups, -1, patches.shape[2])  # (N, G, C/G*9, L)
    outputs_per_group = 3 // groups
    product = torch.stack([torch.einsum("nl,nkl->k", g.flatten(2)[:, j], patches[:, j // outputs_per_group])
                           for j in range(3)])  # (C_out, C/G*9): g^T x per output channel
    assert_close(wa.grad.norm(), 0.7 * product.norm())
    assert_close(wa.grad / wa.grad.norm(), wb.grad / wb.grad.norm())


def test_add_conv2d_rejects_an_unknown_grad_norm_in_one_line():
    with pytest.raises(ValueError, match=r"^grad_norm must be one of \['addernet', 'mult'\], got 'l2'$"):
        add_conv2d(torch.randn(1, 3, 4, 4), torch.randn(4, 3, 3, 3), grad_norm="l2")


def test_supernet_add_candidate_steps_like_the_mult_candidate():
    """The supernet's add weight gradient has the norm of the conv candidate's on the same input and output
    gradient (``SUPERNET_ADD_ETA`` x ``||g^T x||``), not AdderNet's fixed ``0.2 sqrt(numel(w))``."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, 5, 5, dtype=F64)
    grads = {}
    for op in (OpKind.MULT, OpKind.ADD):
        slot = ElasticConv(6, 8, 1, (OpKind.MULT, OpKind.ADD), "shared").double()
        y = slot(x, op, 8)
        y.backward(torch.ones_like(y) / y.numel() + torch.linspace(-1, 1, y.numel(), dtype=F64).view_as(y))
        grads[op] = slot.shared.weights["shared"].grad.norm()
    assert SUPERNET_ADD_ETA == 1.0
    assert_close(grads[OpKind.ADD], grads[OpKind.MULT])


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("block", list(VisionBlock))
def test_every_block_type_forward_backward(block, stride):
    torch.manual_seed(0)
    layer = StaticBlock(block, in_channels=6, mid_channels=8, out_channels=10, stride=stride, heads=2)
    x = torch.randn(3, 6, 4, 4, requires_grad=True)
    y = layer(x)
    assert y.shape == (3, 10, 4 // stride, 4 // stride)
    assert (y >= 0).all()  # ReLU after the residual sum
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_identity_shortcut_only_without_stride_or_width_change():
    assert StaticBlock(VisionBlock.CONV, 8, 4, 8, 1, 2).shortcut is None
    assert StaticBlock(VisionBlock.CONV, 8, 4, 8, 2, 2).shortcut is not None
    assert StaticBlock(VisionBlock.ADD, 6, 4, 8, 1, 2).shortcut is not None


def test_self_attention_is_softmax_q_kT_v_per_head():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3, 3, dtype=F64)
    proj = [torch.randn(8, 8, dtype=F64) for _ in range(3)]
    q, k, v = (lambda h, p=p: torch.einsum("oc,nchw->nohw", p, h) for p in proj)
    heads = 2
    out = self_attention(x, q, k, v, heads, stride=1)
    tokens = [f(x).reshape(2, heads, 4, 9) for f in (q, k, v)]  # (N, heads, d, T)
    for n in range(2):
        for h in range(heads):
            qh, kh, vh = (t[n, h].T for t in tokens)  # (T, d)
            p = torch.softmax(qh @ kh.T / math.sqrt(4), dim=-1)  # rows: queries
            assert_close(out[n, h * 4:(h + 1) * 4].reshape(4, 9).T, p @ vh)
    x4 = torch.randn(1, 8, 4, 4, dtype=F64)
    assert_close(self_attention(x4, q, k, v, heads, 2), F.avg_pool2d(self_attention(x4, q, k, v, heads, 1), 2))


def test_elastic_batchnorm_is_a_sliced_batchnorm():
    torch.manual_seed(0)
    elastic, plain = ElasticBatchNorm(8), torch.nn.BatchNorm2d(5)
    with torch.no_grad():
        elastic.weight.uniform_(0.5, 2)
        elastic.bias.uniform_(-1, 1)
        plain.weight.copy_(elastic.weight[:5])
        plain.bias.copy_(elastic.bias[:5])
    x = torch.randn(4, 5, 3, 3) * 3 + 1
    assert_close(elastic(x), plain(x))
    assert_close(elastic.running_mean[:5], plain.running_mean)
    assert (elastic.running_mean[5:] == 0).all() and (elastic.running_var[5:] == 1).all()
    elastic.eval(), plain.eval()
    assert_close(elastic(x), plain(x))
    assert_close(elastic.export(5).eval()(x), plain(x))


@pytest.mark.parametrize("op", list(OpKind))
def test_elastic_conv_front_slices_the_shared_weight(op):
    torch.manual_seed(0)
    slot = ElasticConv(6, 8, 3, list(OpKind), "shared")
    x = torch.randn(2, 4, 5, 5)
    y = slot(x, op, 5, stride=2)
    w = slot.shared.weight_for(op)[:5, :4]
    expected = add_conv2d(x, w, 2, 1) if op is OpKind.ADD else F.conv2d(x, w, None, 2, 1)
    assert_close(y, expected)
