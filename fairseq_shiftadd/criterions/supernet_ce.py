"""Label-smoothed cross-entropy for hybrid supernets (ShiftAddNAS, arXiv 2205.08119).

``loss = LS-CE + reg_weight * R(model) * sample_size + distill_weight * KD``

* ``R``: the heterogeneous weight-sharing regulariser (``model.sharing_regulariser()``, pulling add
  weights toward a Laplacian; 0 for models without one), scaled by ``sample_size`` so that after
  fairseq's division by ``sample_size`` it weighs ``reg_weight`` per update, as in the paper (10).
* ``KD``: in-place distillation, ``sum_t KL(p_teacher(.|t) || p_student(.|t))`` over non-pad target
  tokens, with the teacher (the largest subnet) given by the task.
"""

from dataclasses import dataclass, field
from typing import Optional

from fairseq import metrics
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from torch import Tensor

__all__ = ["SupernetCriterionConfig", "SupernetCrossEntropyCriterion", "distillation_loss"]


@dataclass
class SupernetCriterionConfig(LabelSmoothedCrossEntropyCriterionConfig):
    sharing_reg_weight: float = field(
        default=10.0, metadata={"help": "weight of the heterogeneous-sharing distribution regulariser"}
    )
    distill_weight: float = field(
        default=0.0, metadata={"help": "weight of in-place distillation from the largest subnet (0: off)"}
    )


def distillation_loss(lprobs: Tensor, teacher_lprobs: Tensor, target: Tensor, padding_idx: int) -> Tensor:
    """Summed ``KL(teacher || student)`` over the non-pad positions.

    Shape: lprobs, teacher_lprobs (N, V) log-probabilities; target (N,) -> scalar.
    """
    if lprobs.shape != teacher_lprobs.shape:
        raise ValueError(f"teacher_lprobs {tuple(teacher_lprobs.shape)} must match lprobs {tuple(lprobs.shape)}")
    kl = (teacher_lprobs.exp() * (teacher_lprobs - lprobs)).sum(-1)
    return kl.masked_fill(target.eq(padding_idx), 0.0).sum()


class SupernetCrossEntropyCriterion(LabelSmoothedCrossEntropyCriterion):
    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False,
                 sharing_reg_weight=10.0, distill_weight=0.0):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        self.sharing_reg_weight = sharing_reg_weight
        self.distill_weight = distill_weight

    def forward(self, model, sample, reduce: bool = True, teacher_lprobs: Optional[Tensor] = None):
        """As fairseq's criterion, plus the regulariser and (with ``teacher_lprobs`` (B, T, V)) distillation."""
        net_output = model(**sample["net_input"])
        loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=reduce)
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        regulariser = getattr(model, "sharing_regulariser", None)
        if self.sharing_reg_weight and regulariser is not None:
            reg = regulariser()
            loss = loss + self.sharing_reg_weight * reg * sample_size
            logging_output["sharing_reg"] = reg.data * sample_size
        if self.distill_weight and teacher_lprobs is not None:
            lprobs, target = self.get_lprobs_and_target(model, net_output, sample)
            teacher = teacher_lprobs[:, self.ignore_prefix_size:, :].reshape(-1, teacher_lprobs.size(-1))
            kd = distillation_loss(lprobs, teacher.to(lprobs.dtype), target, self.padding_idx)
            loss = loss + self.distill_weight * kd
            logging_output["distill_loss"] = kd.data
        logging_output["loss"] = loss.data
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"] = n_correct.item()
            logging_output["total"] = total.item()
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        for key, denominator in (("sharing_reg", sample_size), ("distill_loss", ntokens)):
            total = sum(log.get(key, 0) for log in logging_outputs)
            if any(key in log for log in logging_outputs) and denominator:
                metrics.log_scalar(key, float(total) / denominator, denominator, round=4)
