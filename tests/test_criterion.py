"""The supernet criterion's pure parts: distillation identities."""
import pytest
import torch

from fairseq_shiftadd.criterions.supernet_ce import distillation_loss


def test_distillation_is_zero_for_identical_distributions_and_positive_otherwise() -> None:
    lprobs = torch.randn(6, 10).log_softmax(-1)
    target = torch.tensor([1, 2, 3, 4, 5, 0])
    assert distillation_loss(lprobs, lprobs, target, padding_idx=0).abs() < 1e-6
    other = torch.randn(6, 10).log_softmax(-1)
    assert distillation_loss(lprobs, other, target, padding_idx=0) > 0


def test_distillation_ignores_padding_and_equals_kl_sum() -> None:
    student = torch.randn(4, 7).log_softmax(-1)
    teacher = torch.randn(4, 7).log_softmax(-1)
    target = torch.tensor([3, 1, 1, 1])  # padding_idx 1: only row 0 counts
    expected = torch.nn.functional.kl_div(student[0], teacher[0], log_target=True, reduction="sum")
    torch.testing.assert_close(distillation_loss(student, teacher, target, padding_idx=1), expected)


def test_distillation_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="teacher_lprobs"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), 0)
