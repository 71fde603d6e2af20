"""Inactive candidates stand still: weights and Adam state of untouched parameters are bit-identical after a step.

Fast tests here: the supernet task with a zero-filling all-reduce (what ``legacy_ddp`` does) and fairseq's fp16
optimizers (flat and per-parameter fp32 master weights). The 2-rank gloo ``fairseq-train`` run is in
``tests/models/test_inactive_distributed.py`` (slow).
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from fairseq.dataclass.configs import FairseqConfig
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
from fairseq.optim.fp16_optimizer import FP16Optimizer
from omegaconf import OmegaConf

from fairseq_shiftadd.criterions.supernet_ce import SupernetCrossEntropyCriterion
from fairseq_shiftadd.inactive import InactiveParameterGuard
from fairseq_shiftadd.ops.kinds import BlockType
from fairseq_shiftadd.space import largest
from fairseq_shiftadd.tasks.supernet_translation import SupernetTranslationConfig, SupernetTranslationTask


def _is_candidate(name: str) -> bool:
    """The parameters of the lightweight_conv candidate of encoder layer 0 (``sharing = none``)."""
    return name.startswith("encoder.layers.0.mixer.lightweight.") and "lightweight_conv" in name.split(".")


def _sample(builders, task):
    src, lengths, prev = builders.token_batch(task, seed=3)
    pad = task.target_dictionary.pad()
    target = torch.cat([prev[:, 1:], torch.full_like(prev[:, :1], pad)], dim=1)
    return {"net_input": {"src_tokens": src, "src_lengths": lengths, "prev_output_tokens": prev},
            "target": target, "ntokens": int(target.ne(pad).sum())}


def _adam_config(**kw):
    return FairseqAdamConfig(lr=[1e-3], adam_betas="(0.9, 0.98)", **kw)


def _snapshot(model, optimizer):
    state = optimizer.optimizer.state
    return {
        name: (p.detach().clone(), {k: v.clone() if torch.is_tensor(v) else v for k, v in state.get(p, {}).items()})
        for name, p in model.named_parameters() if _is_candidate(name)
    }


def _identical(before, after):
    for name, (weight, state) in before.items():
        if not torch.equal(weight, after[name][0]) or state.keys() != after[name][1].keys():
            return False
        if not all(torch.equal(v, after[name][1][k]) if torch.is_tensor(v) else v == after[name][1][k]
                   for k, v in state.items()):
            return False
    return True


def _train_two_updates(builders, task, guarded: bool):
    """Update 0 trains a subnet using the candidate, update 1 one without it; zero-filled grads, weight decay."""
    space = builders.tiny
    supernet = builders.supernet(task, space, "none").train()
    with_conv = largest(space)
    with_conv = dataclasses.replace(
        with_conv, encoder=(dataclasses.replace(with_conv.encoder[0], block=BlockType.LIGHTWEIGHT_CONV),)
        + with_conv.encoder[1:],
    )
    plain = largest(space)
    seeded = SupernetTranslationConfig(seed=1)  # the fixed subnet is set per update below
    trainer_task = SupernetTranslationTask(seeded, task.source_dictionary, task.target_dictionary)
    if not guarded:
        trainer_task.inactive_guard = SimpleNamespace(record=lambda *a: None, attach=lambda *a: None)
    criterion = SupernetCrossEntropyCriterion(trainer_task, False, 0.1)
    optimizer = FairseqAdam(_adam_config(weight_decay=0.01), list(supernet.parameters()))
    sample = _sample(builders, task)
    snapshots = []
    for update, sub in enumerate((with_conv, plain)):
        trainer_task.fixed_subnet = sub
        optimizer.zero_grad()
        trainer_task.train_step(sample, supernet, criterion, optimizer, update)
        for p in supernet.parameters():  # legacy_ddp's all-reduce: missing gradients become zeros
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        snapshots.append(_snapshot(supernet, optimizer))
    return snapshots


def test_inactive_candidate_and_its_adam_state_stand_still(builders, task):
    active, inactive = _train_two_updates(builders, task, guarded=True)
    assert active and all(state for _, state in active.values())  # the candidate trained in update 0
    assert _identical(active, inactive)


def test_without_the_guard_zero_filled_gradients_move_the_candidate(builders, task):
    """The control: what the guard prevents does happen (stale momentum, weight decay, moment decay)."""
    active, inactive = _train_two_updates(builders, task, guarded=False)
    assert not _identical(active, inactive)


def _fp16_optimizer(params, flatten: bool, monkeypatch) -> FP16Optimizer:
    cfg = OmegaConf.structured(FairseqConfig)
    cfg.optimizer = OmegaConf.structured(_adam_config(_name="adam"))
    cfg.common.fp16_no_flatten_grads = not flatten
    cfg.common.fp16_scale_window = 128
    monkeypatch.setattr(torch.cuda, "current_device", lambda: None)  # CPU: the flat buffer's device key is None
    return FP16Optimizer.build_optimizer(cfg, params)


@pytest.mark.parametrize("flatten", [True, False], ids=["flat", "per_parameter"])
@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "unguarded"])
def test_fp16_master_weights_of_untouched_parameters_stand_still(flatten, guarded, monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)).half()
    params = list(model.parameters())
    optimizer = _fp16_optimizer(params, flatten, monkeypatch)
    guard = InactiveParameterGuard()
    for update, used in enumerate((params, params[:2])):  # update 1 does not touch the second linear
        optimizer.zero_grad()
        optimizer.backward(sum((p.float() * torch.randn(p.shape)).sum() for p in used))
        if guarded:
            guard.record(model, update)
            guard.attach(optimizer)
        if update == 1:
            before = [p.detach().clone() for p in params[2:]]
            touched_before = params[0].detach().clone()
            masters = [t.detach().clone() for t in _fp32_views(optimizer)]
            moments = [t.clone() for t in _moments(optimizer)]
        optimizer.step()
    still = all(torch.equal(a, p) for a, p in zip(before, params[2:]))
    still &= all(torch.equal(a, t) for a, t in zip(masters, _fp32_views(optimizer)))
    still &= all(torch.equal(a, t) for a, t in zip(moments, _moments(optimizer)))
    assert still is guarded
    assert not torch.equal(touched_before, params[0])  # the step ran: the touched linear moved


def _fp32_views(optimizer):
    """The fp32 master weights of the second linear (weight, bias)."""
    if optimizer.has_flat_params:
        flat = next(iter(optimizer.fp32_params.values()))
        return [flat[20:36], flat[36:40]]
    return optimizer.fp32_params[2:]


def _moments(optimizer):
    state = optimizer.optimizer.state
    if optimizer.has_flat_params:
        flat = next(iter(optimizer.fp32_params.values()))
        return [state[flat][k][20:40] for k in ("exp_avg", "exp_avg_sq")]
    return [state[p][k] for p in optimizer.fp32_params[2:] for k in ("exp_avg", "exp_avg_sq")]
