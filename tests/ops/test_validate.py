"""The package's value checks (ops/validate.py): each returns a valid value unchanged, and refuses a bad one
(bool, NaN and out-of-range values included) with a message naming the argument and what is allowed."""
import math

import pytest

from fairseq_shiftadd.ops.validate import (int_in_range, int_range_text, is_int, is_number, positive_int,
                                           positive_number, probability)


def test_predicates_reject_bool() -> None:
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert is_number(3) and is_number(0.5) and not is_number(False) and not is_number("1")


@pytest.mark.parametrize("low, high, text", [
    (1, None, "a positive integer"), (0, None, "an integer >= 0"), (100, None, "an integer >= 100"),
    (2, 16, "an integer in [2, 16]"),
])
def test_int_range_text(low, high, text) -> None:
    assert int_range_text(low, high) == text


def test_int_in_range() -> None:
    assert int_in_range("dim", 64, 1, 64) == 64 and int_in_range("warmup", 0, 0) == 0 and positive_int("n", 1) == 1
    for value in (0, 65, True, 2.0, None):
        with pytest.raises(ValueError, match=rf"^dim must be an integer in \[1, 64\], got {value!r}$"):
            int_in_range("dim", value, 1, 64)
    with pytest.raises(ValueError, match=r"^Workload.beam must be a positive integer, got 0$"):
        positive_int("Workload.beam", 0)


def test_positive_number() -> None:
    assert positive_number("eta", 0.1) == 0.1 and positive_number("eta", None, optional=True) is None
    for value in (0, -1.0, math.inf, math.nan, True, None):
        with pytest.raises(ValueError, match=r"^eta must be a positive finite number, got "):
            positive_number("eta", value)
    with pytest.raises(ValueError, match=r"^scale must be None or a positive finite number, got 0$"):
        positive_number("scale", 0, optional=True)


def test_probability() -> None:
    assert probability("p", 0) == 0 and probability("p", 1.0) == 1.0 and probability("p", 0.5, high_open=True) == 0.5
    for value in (-0.1, 1.1, math.nan, True):
        with pytest.raises(ValueError, match=r"^p must be a probability in \[0, 1\], got "):
            probability("p", value)
    with pytest.raises(ValueError, match=r"^weight_dropout must be a probability in \[0, 1\), got 1.0$"):
        probability("weight_dropout", 1.0, high_open=True)
