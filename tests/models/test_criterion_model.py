"""The supernet criterion on a real supernet: plain LS-CE, the sharing regulariser and distillation."""
import dataclasses

import torch
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

from fairseq_shiftadd.criterions.supernet_ce import SupernetCrossEntropyCriterion
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.space import largest, smallest


def _sample(builders, task):
    src, lengths, prev = builders.token_batch(task, seed=3)
    pad = task.target_dictionary.pad()
    target = torch.cat([prev[:, 1:], torch.full_like(prev[:, :1], pad)], dim=1)
    target[:, -1] = torch.where(prev[:, -1] == pad, pad, task.target_dictionary.eos())
    net_input = {"src_tokens": src, "src_lengths": lengths, "prev_output_tokens": prev}
    return {"net_input": net_input, "target": target, "ntokens": int(target.ne(pad).sum())}


def _criterion(task, reg=0.0, distill=0.0):
    return SupernetCrossEntropyCriterion(task, False, 0.1, sharing_reg_weight=reg, distill_weight=distill)


def test_without_extras_equals_fairseq_label_smoothing(builders, task):
    model = builders.supernet(task, builders.tiny, "heterogeneous").eval()
    sample = _sample(builders, task)
    ours, size, _ = _criterion(task)(model, sample)
    theirs, their_size, _ = LabelSmoothedCrossEntropyCriterion(task, False, 0.1)(model, sample)
    torch.testing.assert_close(ours, theirs)
    assert size == their_size == sample["ntokens"]


def test_regulariser_term_is_weighted_by_sample_size(builders, task):
    model = builders.supernet(task, builders.tiny, "heterogeneous").eval()
    base = smallest(builders.tiny)
    with_add = dataclasses.replace(base, encoder=tuple(dataclasses.replace(l, ffn_op=OpKind.ADD) for l in base.encoder))
    model.set_subnet(with_add)
    sample = _sample(builders, task)
    plain, _, _ = _criterion(task)(model, sample)
    regularised, size, log = _criterion(task, reg=10.0)(model, sample)
    reg = model.sharing_regulariser()
    assert reg.item() > 0
    torch.testing.assert_close(regularised - plain, 10.0 * reg * size)
    torch.testing.assert_close(log["sharing_reg"], reg.detach() * size)


def test_distillation_from_the_largest_subnet(builders, task):
    model = builders.supernet(task, builders.tiny, "shared").eval()
    sample = _sample(builders, task)
    model.set_subnet(largest(builders.tiny))
    with torch.no_grad():
        teacher = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
    _, _, self_log = _criterion(task, distill=1.0)(model, sample, teacher_lprobs=teacher)
    assert abs(float(self_log["distill_loss"])) < 1e-4  # the teacher distilled into itself
    model.set_subnet(smallest(builders.tiny))
    loss, _, log = _criterion(task, distill=0.5)(model, sample, teacher_lprobs=teacher)
    plain, _, _ = _criterion(task)(model, sample)
    assert float(log["distill_loss"]) > 0
    torch.testing.assert_close(loss, plain + 0.5 * log["distill_loss"])
