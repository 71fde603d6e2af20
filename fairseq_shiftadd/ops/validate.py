"""Value checks of the whole package, and 2-D convolution geometry shared by the operators of ShiftAddNAS
(arXiv 2205.08119).

The one owner of the small value checks (integers and numbers in a range, probabilities) that operators, configs
and cost models apply to their arguments: every check raises a ``ValueError`` whose message names the argument
(or field) and says what is allowed, e.g. ``dim must be an integer in [1, 64], got 65``; ``bool`` is never taken
for a number. Command-line flags are parsed by :mod:`fairseq_shiftadd.cli_types`, in the same words
(:func:`int_range_text`). :class:`Conv2dGeometry` is the one place that validates a convolution's channels,
groups, kernel, stride, padding and dilation and computes its output size, so the shift and adder convolutions
agree on them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Optional, Sequence, Tuple

__all__ = ["is_int", "is_number", "int_range_text", "int_in_range", "positive_int", "positive_number",
           "probability", "int_pair", "Conv2dGeometry", "Conv2dAttributes"]

IntPair = Tuple[int, int]


def is_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether ``value`` is an ``int`` or a ``float`` and not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def int_range_text(low: int, high: Optional[int] = None) -> str:
    """How the integers ``[low, high]`` (``>= low`` without ``high``) read in a message: ``a positive integer``,
    ``an integer >= 0``, ``an integer in [2, 16]``."""
    if high is not None:
        return f"an integer in [{low}, {high}]"
    return "a positive integer" if low == 1 else f"an integer >= {low}"


def int_in_range(name: str, value: int, low: int, high: Optional[int] = None) -> int:
    """Return ``value`` if it is an integer in ``[low, high]`` (``>= low`` without ``high``; ``bool`` is rejected).

    Raises:
        ValueError: otherwise; the message names ``name`` and the range (:func:`int_range_text`).
    """
    if not is_int(value) or value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {int_range_text(low, high)}, got {value!r}")
    return value


def positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer ``>= 1`` (``bool`` is rejected).

    Raises:
        ValueError: otherwise; the message names ``name``.
    """
    return int_in_range(name, value, 1)


def positive_number(name: str, value: Optional[float], optional: bool = False) -> Optional[float]:
    """Return ``value`` if it is a finite number ``> 0`` (or ``None`` when ``optional``; ``bool`` is rejected).

    Raises:
        ValueError: otherwise; the message names ``name``.
    """
    if optional and value is None:
        return None
    if not is_number(value) or not 0 < value < math.inf:
        allowed = "None or a positive finite number" if optional else "a positive finite number"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def probability(name: str, value: float, high_open: bool = False) -> float:
    """Return ``value`` if it is a number in ``[0, 1]`` (``[0, 1)`` when ``high_open``; NaN and ``bool`` rejected).

    Raises:
        ValueError: otherwise; the message names ``name``.
    """
    if not is_number(value) or not (0.0 <= value < 1.0 if high_open else 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1{')' if high_open else ']'}, got {value!r}")
    return value


def int_pair(name: str, value: int | Sequence[int], minimum: int) -> IntPair:
    """``value`` as an ``(h, w)`` pair: an int ``v`` gives ``(v, v)``, a tuple or list of two ints is kept.

    Raises:
        ValueError: ``value`` is not an integer ``>= minimum`` or a pair of them; the message names ``name``.
    """
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or any(not is_int(v) or v < minimum for v in pair):
        raise ValueError(f"{name} must be an integer >= {minimum} or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class Conv2dGeometry:
    """Shape parameters of a zero-padded 2-D convolution (build it with :meth:`create`, which validates).

    ``H_out = floor((H + 2*pad_h - dil_h*(kh - 1) - 1) / stride_h) + 1`` (likewise ``W_out``); each output
    element is a dot product of length ``(in_channels / groups) * kh * kw``.

    Shape: x (N, in_channels, H, W) -> y (N, out_channels, H_out, W_out);
    weight (out_channels, in_channels / groups, kh, kw).
    """

    in_channels: int
    out_channels: int
    kernel_size: IntPair
    stride: IntPair
    padding: IntPair
    dilation: IntPair
    groups: int

    @classmethod
    def create(
        cls,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> "Conv2dGeometry":
        """Validate the arguments (each an int or an ``(h, w)`` pair where a pair is allowed) and build.

        Raises:
            ValueError: a channel count or ``groups`` is not a positive integer, ``groups`` does not divide
                both channel counts, ``kernel_size``, ``stride`` or ``dilation`` is not ``>= 1``, or
                ``padding`` is not ``>= 0``; the message names the argument.
        """
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        positive_int("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        return cls(
            in_channels,
            out_channels,
            int_pair("kernel_size", kernel_size, 1),
            int_pair("stride", stride, 1),
            int_pair("padding", padding, 0),
            int_pair("dilation", dilation, 1),
            groups,
        )

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        """``(out_channels, in_channels / groups, kh, kw)``."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def dot_length(self) -> int:
        """Length of one output element's dot product: ``(in_channels / groups) * kh * kw``."""
        return self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]

    def output_size(self, height: int, width: int) -> IntPair:
        """``(H_out, W_out)`` for an ``H x W`` input (see the class docstring; may be ``< 1``)."""
        return tuple(  # type: ignore[return-value]
            (size + 2 * pad - dil * (k - 1) - 1) // step + 1
            for size, k, step, pad, dil in zip(
                (height, width), self.kernel_size, self.stride, self.padding, self.dilation
            )
        )

    def check_input(self, shape: Sequence[int], name: str) -> int:
        """Validate an input shape ``(N, in_channels, H, W)`` with a non-empty output; return ``N*C_out*H_out*W_out``.

        Raises:
            ValueError: wrong rank or channel count, or ``H x W`` too small for the kernel, padding and
                dilation; the message names ``name``.
        """
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"{name} must have shape (N, in_channels={self.in_channels}, H, W), got {tuple(shape)}")
        out_h, out_w = self.output_size(shape[2], shape[3])
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"{name} spatial size {tuple(shape[2:])} is too small for kernel_size={self.kernel_size}, "
                f"padding={self.padding} and dilation={self.dilation}"
            )
        return math.prod((shape[0], self.out_channels, out_h, out_w))


class Conv2dAttributes:
    """Mixin for a layer holding a :class:`Conv2dGeometry` as ``geometry``: its fields as read-only attributes.

    ``layer.stride`` is ``layer.geometry.stride`` (likewise ``in_channels``, ``out_channels``, ``kernel_size``,
    ``padding``, ``dilation``, ``groups``), and :meth:`output_size` is ``geometry.output_size``.
    """

    geometry: Conv2dGeometry
    in_channels = property(attrgetter("geometry.in_channels"))
    out_channels = property(attrgetter("geometry.out_channels"))
    kernel_size = property(attrgetter("geometry.kernel_size"))
    stride = property(attrgetter("geometry.stride"))
    padding = property(attrgetter("geometry.padding"))
    dilation = property(attrgetter("geometry.dilation"))
    groups = property(attrgetter("geometry.groups"))

    def output_size(self, height: int, width: int) -> IntPair:
        """``(H_out, W_out)`` for an ``H x W`` input."""
        return self.geometry.output_size(height, width)
