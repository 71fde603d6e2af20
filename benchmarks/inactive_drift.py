"""Drift of an inactive candidate when missing gradients are zero-filled (``legacy_ddp``), with and without the guard.

    python benchmarks/inactive_drift.py

A tiny supernet (``sharing none``) trains 5 updates with encoder layer 0 as ``lightweight_conv``, then 5 with it as
``attention``; after every backward the missing gradients are zero-filled, as fairseq's ``legacy_ddp`` all-reduce
does. Prints the largest change of that candidate's ``linear1`` weight in each phase, with the task's
``InactiveParameterGuard`` on and off (Adam, lr 1e-3, betas 0.9 / 0.98).
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch
from fairseq.data import Dictionary
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

from fairseq_shiftadd.criterions.supernet_ce import SupernetCrossEntropyCriterion
from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.ops.kinds import BlockType
from fairseq_shiftadd.space import get_space, largest
from fairseq_shiftadd.tasks.supernet_translation import SupernetTranslationConfig, SupernetTranslationTask

UPDATES_PER_PHASE = 5


def _sample(dictionary: Dictionary, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(dictionary.nspecial, len(dictionary), (4, 9), generator=g)
    prev = torch.randint(dictionary.nspecial, len(dictionary), (4, 7), generator=g)
    prev[:, 0] = dictionary.eos()
    target = torch.cat([prev[:, 1:], torch.full_like(prev[:, :1], dictionary.eos())], dim=1)
    net_input = {"src_tokens": src, "src_lengths": torch.full((4,), 9), "prev_output_tokens": prev}
    return {"net_input": net_input, "target": target, "ntokens": target.numel()}


def drift(guarded: bool) -> tuple:
    """Max |change| of the candidate's weight over its active phase and over its inactive phase."""
    torch.manual_seed(0)
    space = get_space("tiny")
    dictionary = Dictionary()
    for i in range(40):
        dictionary.add_symbol(f"w{i}")
    holder = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    model = ShiftAddSupernet.from_space(SupernetConfig(space="tiny", sharing="none"), holder, space).train()
    plain = largest(space)
    with_conv = dataclasses.replace(
        plain, encoder=(dataclasses.replace(plain.encoder[0], block=BlockType.LIGHTWEIGHT_CONV),) + plain.encoder[1:]
    )
    task = SupernetTranslationTask(SupernetTranslationConfig(seed=1), dictionary, dictionary)
    if not guarded:
        task.inactive_guard = SimpleNamespace(record=lambda *a: None, attach=lambda *a: None)
    criterion = SupernetCrossEntropyCriterion(task, False, 0.1)
    optimizer = FairseqAdam(FairseqAdamConfig(lr=[1e-3], adam_betas="(0.9, 0.98)"), list(model.parameters()))
    weight = model.encoder.layers[0].mixer.lightweight.linear1["lightweight_conv"].weight.weights["mult"]
    marks = [weight.detach().clone()]
    for update in range(2 * UPDATES_PER_PHASE):
        task.fixed_subnet = with_conv if update < UPDATES_PER_PHASE else plain
        optimizer.zero_grad()
        task.train_step(_sample(dictionary, update), model, criterion, optimizer, update)
        for p in model.parameters():  # what legacy_ddp's all-reduce does
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        if update + 1 in (UPDATES_PER_PHASE, 2 * UPDATES_PER_PHASE):
            marks.append(weight.detach().clone())
    return tuple(float((b - a).abs().max()) for a, b in zip(marks, marks[1:]))


def main() -> None:
    print("| guard | max abs change, 5 active updates | max abs change, 5 inactive updates |")
    print("|---|---|---|")
    for guarded in (False, True):
        active, inactive = drift(guarded)
        print(f"| {'on' if guarded else 'off'} | {active:.2e} | {inactive:.2e} |")


if __name__ == "__main__":
    main()
