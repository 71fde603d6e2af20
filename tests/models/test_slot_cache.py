"""The weight slots' inference cache: each derived full-size weight (``q(W)``, ``T_add(W)``, ``q(T_shift(W))``,
DeepShift-PS ``s * 2**p``) is built once per parameter version without autograd, and on every call with it.

Cached and uncached outputs agree to rounding, not bit for bit: with the cache, a shift linear on a few rows
reads its weight's packed codes (``pow2_linear``: the same products, summed in another order)."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from fairseq_shiftadd.ops import hetero, shift
from fairseq_shiftadd.ops.hetero import PiecewiseLinearRemap
from fairseq_shiftadd.ops.kernels.weight_cache import caching_disabled
from fairseq_shiftadd.ops.kinds import OpKind

SUPERNETS = {  # sharing, supernet options: every kind of derived weight
    "shared": ("shared", {}),
    "heterogeneous": ("heterogeneous", {}),
    "none_ps": ("none", {"shift_weights": "ps"}),
}


@pytest.fixture
def derivations(monkeypatch):
    """Counts the computations of derived weights: q (DeepShift-Q rounding), T (remaps), PS ``s * 2**p``."""
    calls = {"q": 0, "T": 0, "ps": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(hetero, "round_pow2_ste", counted("q", hetero.round_pow2_ste))
    monkeypatch.setattr(PiecewiseLinearRemap, "forward", counted("T", PiecewiseLinearRemap.forward))
    monkeypatch.setattr(shift, "clamped_ps_weight", counted("ps", shift.clamped_ps_weight))

    def taken():
        total = sum(calls.values())
        calls.update(dict.fromkeys(calls, 0))
        return total

    return taken


def _logits(model, batch):
    src, lengths, prev = batch
    return model(src, lengths, prev)[0]


def _supernet(builders, task, name, seed=1):
    sharing, options = SUPERNETS[name]
    return builders.supernet(task, builders.tiny, sharing, seed=seed, **options)


@pytest.mark.parametrize("name", list(SUPERNETS))
def test_eval_output_equals_uncached_and_derived_weights_are_built_once(builders, task, name, derivations):
    supernet = _supernet(builders, task, name)
    subs = builders.covering_subnets(builders.tiny, 3, seed=2)
    batch = builders.token_batch(task, seed=0)
    for sub in subs:
        supernet.set_subnet(sub)
        with torch.no_grad(), caching_disabled():
            uncached = _logits(supernet, batch)
        per_forward = derivations()
        assert per_forward > 0  # the subnet reads derived weights
        with torch.no_grad():
            first, second = _logits(supernet, batch), _logits(supernet, batch)
        assert derivations() <= per_forward  # built at most once (none when an earlier subnet built them)
        with torch.no_grad():
            third = _logits(supernet, batch)
        assert derivations() == 0
        assert torch.equal(first, second) and torch.equal(second, third)
        assert_close(first, uncached)
        assert torch.equal(_logits(supernet, batch).detach(), uncached)  # the autograd path computes the same


@pytest.mark.parametrize("name", ["shared", "heterogeneous"])
def test_autograd_caches_nothing_and_gradients_reach_weights_and_remaps(builders, task, name, derivations):
    supernet = _supernet(builders, task, name)
    sub = builders.covering_subnets(builders.tiny, 1, seed=2)[0]
    supernet.set_subnet(sub)
    batch = builders.token_batch(task, seed=0)
    _logits(supernet, batch).sum().backward()
    per_forward = derivations()
    _logits(supernet, batch).sum().backward()
    assert derivations() == per_forward > 0
    with torch.no_grad():
        _logits(supernet, batch)
    assert derivations() == per_forward  # the autograd calls left nothing in the caches
    grads = dict((n, p.grad) for n, p in supernet.named_parameters())
    ffn_ops = {f"{side}.layers.{i}.ffn.fc1": layer.ffn_op for side in ("encoder", "decoder")
               for i, layer in enumerate(getattr(sub, side))}
    assert {OpKind.SHIFT, OpKind.ADD} <= set(ffn_ops.values())
    for slot, op in ffn_ops.items():
        # heterogeneous shift reads q(T_shift(stop_grad(W))): its gradient trains only T_shift
        if op is OpKind.ADD or (op is OpKind.SHIFT and name == "shared"):
            assert grads[f"{slot}.weight.shared"].abs().sum() > 0
        if op is not OpKind.MULT and name == "heterogeneous":
            assert grads[f"{slot}.remap.{op.value}.log_scale"].abs().sum() > 0


def _assert_follows(supernet, batch, before):
    with torch.no_grad():
        cached = _logits(supernet, batch)
        with caching_disabled():
            uncached = _logits(supernet, batch)
    assert_close(cached, uncached)
    assert not torch.equal(cached, before)
    return cached


@pytest.mark.parametrize("name", list(SUPERNETS))
def test_cache_follows_steps_state_loads_remaps_and_data_writes(builders, task, name):
    supernet = _supernet(builders, task, name)
    supernet.set_subnet(builders.covering_subnets(builders.tiny, 1, seed=2)[0])
    batch = builders.token_batch(task, seed=0)
    with torch.no_grad():
        out = _logits(supernet, batch)

    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.5)
    _logits(supernet, batch).logsumexp(-1).sum().backward()  # in eval mode: no train() call clears the caches
    optimizer.step()
    out = _assert_follows(supernet, batch, out)

    other = _supernet(builders, task, name, seed=5)
    other.set_subnet(supernet.subnet)
    supernet.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert_close(_logits(other, batch), _assert_follows(supernet, batch, out))
        out = _logits(supernet, batch)

    if name == "heterogeneous":
        with torch.no_grad():
            for n, p in supernet.named_parameters():
                if n.endswith("log_scale"):
                    p.add_(0.3)
        out = _assert_follows(supernet, batch, out)

    for p in supernet.parameters():
        p.data.mul_(0.5)  # bypasses the version counters: a mode switch (as every training loop does) clears
    supernet.train().eval()
    _assert_follows(supernet, batch, out)


def test_cache_built_in_inference_mode_serves_later_calls(builders, task, derivations):
    supernet = _supernet(builders, task, "heterogeneous")
    supernet.set_subnet(builders.covering_subnets(builders.tiny, 1, seed=2)[0])
    batch = builders.token_batch(task, seed=0)
    with torch.inference_mode():
        first = _logits(supernet, batch)
    derivations()
    with torch.no_grad():
        assert torch.equal(_logits(supernet, batch), first)
    assert derivations() == 0


@pytest.mark.parametrize("sharing", ["shared", "none"])
def test_shift_users_read_the_packed_codes_of_their_slice(sharing, monkeypatch):
    from fairseq_shiftadd.models.sharing import SlotUser, WeightSlot
    from fairseq_shiftadd.ops.kernels import cpu_shift, dispatch

    monkeypatch.setattr(cpu_shift, "PACKED_MIN_WEIGHTS", 1)  # this small slot's weights too
    if not cpu_shift.packed_supported(torch.zeros(1, 1), None, 1):
        pytest.skip("the CPU kernels did not build here (no g++?)")
    calls, packs = [], []
    monkeypatch.setattr(cpu_shift, "pow2_linear", lambda *args, run=cpu_shift.pow2_linear: calls.append(1) or
                        run(*args))
    monkeypatch.setattr(dispatch, "pow2_codes", lambda w, run=dispatch.pow2_codes: packs.append(1) or run(w))
    torch.manual_seed(0)
    users = {"mult": SlotUser(OpKind.MULT, (48, 40)), "shift": SlotUser(OpKind.SHIFT, (40, 32))}
    slot = WeightSlot(users, sharing).eval()
    with torch.no_grad():
        slot.bias[slot.key_of["shift"]].normal_()
        x = torch.randn(3, 24)  # narrower than the slot: a front slice of the weight
        y = slot.linear(x, "shift", 20)
        weight, bias = slot.read("shift")
        assert_close(y, torch.nn.functional.linear(x, weight[:20, :24], bias[:20]))
        slot.linear(x, "shift", 20)
    assert calls == [1, 1] and packs == [1]  # packed once, read twice
