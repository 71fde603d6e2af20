"""Lightweight token mixers over time: the lightweight conv family of ShiftAddNAS (arXiv 2205.08119).

Lightweight convolution (Wu et al., arXiv 1901.10430) is a depthwise 1-D convolution over time whose
kernel ``w`` of shape ``(H, K)`` is shared by the ``C / H`` channels of each head (channel ``c`` uses
head ``h(c) = c // (C / H)``), optionally softmax-normalised over ``K`` and regularised with DropConnect.
With ``pad = K // 2`` (centred, encoder) or ``pad = K - 1`` (causal, decoder) and zero padding at the
sequence borders, the mixers of this module compute, for every position ``t``, batch entry ``b`` and
channel ``c``:

* :class:`LightweightConv` (multiply-accumulate)::

      y[t, b, c] = sum_j  w~[h(c), j] * x[t + j - pad, b, c]

* :class:`LightweightAdd` (AdderNet negative L1, arXiv 1912.13200, via :func:`~.adder.add_matmul`)::

      y[t, b, c] = -sum_j | x[t + j - pad, b, c] - w~[h(c), j] |

* :class:`LightweightShiftAdd`: a :class:`~.shift.ShiftLinear` ``(C -> C)``, then the adder mixer.

where ``w~`` is the normalised kernel (softmax over ``K``, then DropConnect in training; see
:meth:`LightweightMixer.normalised_kernel`), fake-quantised with the input when ``quant`` is set. The three
share one implementation and differ only in the mixing primitive (and in how its operands are quantised).
The block's own ``linear1`` / ``linear2`` are not part of these mixers.

Incremental decoding applies the *same* kernel and the *same* primitive to a window of the last ``K``
inputs (the original ShiftAddNAS ran a multiplicative conv there for its adder mixers). The buffer holds
the previous mixer inputs time-major like the model, as ``(n, B, C)``, batch on axis :data:`BUFFER_BATCH_DIM`
(1), so beam search reorders it with ``buffer.index_select(BUFFER_BATCH_DIM, new_order)``.
"""
from __future__ import annotations

import functools
from enum import Enum
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .adder import GradNorm, add_matmul, neg_l1_broadcast, scale_weight_grad
from .op_counts import OpCounts
from .kernels.build import enabled as kernels_enabled
from .kernels import dispatch
from .kernels.weight_cache import records_autograd
from .kinds import OpKind
from .quant import QuantConfig, operand_fake_quant
from .shift import ShiftLinear
from .validate import positive_int, positive_number, probability

__all__ = [
    "BUFFER_BATCH_DIM",
    "Padding",
    "padding_sizes",
    "mix_windows",
    "mix_window",
    "lightweight_mix",
    "causal_mix_step",
    "LightweightMixer",
    "LightweightConv",
    "LightweightAdd",
    "LightweightShiftAdd",
]

BUFFER_BATCH_DIM = 1
"""Batch axis of the incremental buffer ``(n, B, C)``: reorder beams with ``index_select`` on it."""


class Padding(str, Enum):
    """Where the kernel window sits: ``CENTRED`` pads ``K // 2`` each side, ``CAUSAL`` pads ``K - 1`` left."""

    CENTRED = "centred"
    CAUSAL = "causal"


def _parse_padding(padding: Union[str, Padding]) -> Padding:
    try:
        return Padding(padding)
    except ValueError:
        choices = ", ".join(repr(p.value) for p in Padding)
        raise ValueError(f"padding must be one of {choices}, got {padding!r}") from None


def padding_sizes(kernel_size: int, padding: Union[str, Padding]) -> Tuple[int, int]:
    """Zeros ``(before, after)`` the sequence: ``(K // 2, K // 2)`` centred, ``(K - 1, 0)`` causal."""
    left = kernel_size // 2 if _parse_padding(padding) is Padding.CENTRED else kernel_size - 1
    return left, kernel_size - 1 - left


def mix_windows(
    windows: Tensor,
    kernel: Tensor,
    op: OpKind,
    eta: Optional[float] = None,
    grad_norm: GradNorm | str = GradNorm.ADDERNET,
) -> Tensor:
    """The mixing primitive on unfolded windows, without bias (functional core of :class:`LightweightMixer`).

    ``y[t, b, c] = sum_j op(windows[b, c, t, j], kernel[h(c), j])`` with ``op`` a product (``MULT``, true
    gradients) or ``-|a - w|`` (``ADD``, AdderNet surrogate gradients and adaptive scale ``eta`` with target
    norm ``grad_norm`` through :func:`~.adder.add_matmul`). The windows are regrouped as ``(H, B * C/H * T, K)``
    so that the adder's weight gradient sees the ``(H, K)`` kernel itself. Without autograd (inference, e.g. the
    end of a centred stream, :meth:`LightweightMixer.flush`) the same sums are formed by broadcasting in the windows'
    own layout (:func:`~.adder.neg_l1_broadcast` for ``ADD``), with no regrouping copy.

    Shape: windows ``(B, C, T, K)``, kernel ``(H, K)`` with ``H`` dividing ``C`` -> ``(T, B, C)``.
    """
    B, C, T, K = windows.shape
    H = kernel.size(0)
    if not records_autograd((windows, kernel)):  # inference: the same sums in the windows' own layout, no regrouping
        grouped, taps = windows.reshape(B, H, C // H, T, K), kernel.view(1, H, 1, 1, K)
        out = (grouped * taps).sum(-1) if op is OpKind.MULT else neg_l1_broadcast(grouped, taps)
        return out.view(B, C, T).permute(2, 0, 1)
    rows = windows.reshape(B, H, C // H, T, K).permute(1, 0, 2, 3, 4).reshape(H, -1, K)
    if op is OpKind.MULT:
        out = torch.bmm(rows, kernel.unsqueeze(-1))
    else:
        out = add_matmul(rows, kernel.unsqueeze(1), eta=eta, grad_norm=grad_norm)
    return out.view(H, B, C // H, T).permute(3, 1, 0, 2).reshape(T, B, C)


_BAND_MAX_LENGTH = 128  # band_mix up to this length (measured crossover against conv1d on CPU: 128-256)


def mix_sequence(
    seq: Tensor,
    kernel: Tensor,
    op: OpKind,
    eta: Optional[float] = None,
    grad_norm: GradNorm | str = GradNorm.ADDERNET,
) -> Tensor:
    """:func:`mix_windows` over every ``K``-window of an already padded sequence, on a fast path where one exists.

    ``MULT`` (any device; true gradients): a depthwise ``conv1d`` with each head's kernel repeated for its
    channels. Otherwise, and with ``FAIRSEQ_SHIFTADD_KERNELS=reference``, :func:`mix_windows` on ``seq.unfold``
    (the reference).

    Shape: seq ``(B, C, T + K - 1)``, kernel ``(H, K)`` -> ``(T, B, C)``.
    """
    batch, channels, padded = seq.shape
    heads, kernel_size = kernel.shape
    if op is OpKind.MULT and kernels_enabled():
        weight = kernel.repeat_interleave(channels // heads, dim=0).unsqueeze(1)
        return F.conv1d(seq, weight, groups=channels).permute(2, 0, 1).contiguous()
    if padded < kernel_size:  # an empty sequence (T = 0): no window, which unfold cannot express
        windows = seq[..., :0, None].expand(batch, channels, 0, kernel_size)
    else:
        windows = seq.unfold(2, kernel_size, 1)
    return mix_windows(windows, kernel, op, eta, grad_norm)


def lightweight_mix(
    x: Tensor,
    kernel: Tensor,
    op: OpKind,
    padding: Union[str, Padding],
    eta: Optional[float] = None,
    grad_norm: GradNorm | str = GradNorm.ADDERNET,
) -> Tensor:
    """Mix a whole sequence with an external (already normalised) kernel; zero padding at the borders.

    ``y[t, b, c] = sum_j op(x[t + j - pad, b, c], kernel[h(c), j])``, see :func:`mix_windows`. Callers zero
    padded positions of ``x`` beforehand (as :meth:`LightweightMixer.forward` does). Fast paths: a direct kernel on
    the time-major layout itself, same formulas and gradients, no padded copy, no unfolded windows (``ADD``:
    :func:`~.kernels.dispatch.add_mix`, Triton for CUDA tensors, ``cpu_mixer`` on CPU; ``MULT`` on CPU:
    :func:`~.kernels.dispatch.product_mix`); elsewhere ``MULT`` up to 128 positions as :func:`band_mix`, longer by
    :func:`mix_sequence`.

    Shape: x ``(T, B, C)``, kernel ``(H, K)`` -> ``(T, B, C)``.
    """
    left, right = padding_sizes(kernel.size(1), padding)
    if op is OpKind.MULT:
        y = dispatch.product_mix(x, kernel, left)
        if y is not None:
            return y
        if kernels_enabled() and x.size(0) <= _BAND_MAX_LENGTH:
            return band_mix(x, kernel, left)
    if op is OpKind.ADD:
        scale = functools.partial(scale_weight_grad, eta=eta, grad_norm=GradNorm(grad_norm))
        y = dispatch.add_mix(x, kernel, left, scale)
        if y is not None:
            return y
    return mix_sequence(F.pad(x.permute(1, 2, 0), (left, right)), kernel, op, eta, grad_norm)


def band_mix(x: Tensor, kernel: Tensor, left: int) -> Tensor:
    """The product mixer as fairseq's band-matrix product on the time-major layout (no padding, no transposes).

    ``y[t, b, c] = sum_s band[h(c), t, s] x[s, b, c]`` with ``band[h, t, s] = kernel[h, s - t + left]`` (zero
    outside ``[0, K)``), one batched matmul: ``O(T^2)`` per channel instead of ``O(T K)``, yet faster on CPU
    for ``T <= 128`` (measured; torch's depthwise ``conv1d`` and its backward are slow there). True gradients.

    Shape: x ``(T, B, C)``, kernel ``(H, K)`` -> ``(T, B, C)``.
    """
    (length, batch, channels), (heads, kernel_size) = x.shape, kernel.shape
    width = length + kernel_size - 1
    shifted = kernel.new_zeros(heads, length, width)  # shifted[h, t, t + j] = kernel[h, j]
    shifted.as_strided((heads, length, kernel_size), (length * width, width + 1, 1)).copy_(
        kernel[:, None, :].expand(heads, length, kernel_size))
    band = shifted[:, :, left:left + length]
    out = torch.matmul(band, x.reshape(length, batch, heads, channels // heads).permute(1, 2, 0, 3))
    return out.permute(2, 0, 1, 3).reshape(length, batch, channels)


def mix_window(
    window: Tensor,
    kernel: Tensor,
    op: OpKind,
    eta: Optional[float] = None,
    grad_norm: GradNorm | str = GradNorm.ADDERNET,
) -> Tensor:
    """The newest output of a causal mix from the window of its last ``K`` inputs (a decoding step's mixing).

    ``y[b, c] = sum_j op(window[j, b, c], kernel[h(c), j])``: without autograd by a kernel where one applies
    (:func:`~.kernels.dispatch.mix_window`: one pass over the window, read in place), otherwise :func:`mix_windows`
    on a view of the window (broadcasting without autograd; AdderNet's surrogate gradients with it).

    Shape: window ``(K, B, C)``, kernel ``(H, K)`` -> ``(1, B, C)``.
    """
    if not records_autograd((window, kernel)):
        y = dispatch.mix_window(window, kernel, op)
        if y is not None:
            return y.unsqueeze(0)
    return mix_windows(window.permute(1, 2, 0).unsqueeze(2), kernel, op, eta, grad_norm)


def causal_mix_step(
    x: Tensor,
    kernel: Tensor,
    op: OpKind,
    buffer: Optional[Tensor],
    eta: Optional[float] = None,
    grad_norm: GradNorm | str = GradNorm.ADDERNET,
) -> Tuple[Tensor, Tensor]:
    """One incremental step of the causal :func:`lightweight_mix` (same kernel, same primitive).

    ``buffer`` holds the previous ``K - 1`` inputs, oldest first, batch on :data:`BUFFER_BATCH_DIM`
    (``None``: the left border zeros). Returns the new position's output and the updated buffer.

    Shape: x ``(1, B, C)``, kernel ``(H, K)``, buffer ``(K - 1, B, C)`` -> ``(1, B, C)``, ``(K - 1, B, C)``.
    """
    if buffer is None:
        buffer = x.new_zeros(kernel.size(1) - 1, x.size(1), x.size(2))
    window = torch.cat([buffer, x])
    return mix_window(window, kernel, op, eta, grad_norm), window[1:]


class LightweightMixer(nn.Module):
    """Lightweight token mixer with a pluggable mixing primitive (the common implementation).

    ``y[t, b, c] = bias[c] + sum_j  op(x[t + j - pad, b, c], w~[h(c), j])`` where ``op`` is a product
    (:attr:`OpKind.MULT`) or a negative absolute difference (:attr:`OpKind.ADD`, AdderNet surrogate
    gradients through :func:`~.adder.add_matmul`). A subclass may set ``pre``, a position-wise module
    ``(*, C) -> (*, C)`` with ``op_counts``, applied before mixing. Use the concrete subclasses.

    The windows are unfolded once, as ``(H, B * C/H * T, K)`` (one copy of ``T * B * C * K`` values), and
    mixed with a batched primitive against the ``(H, 1, K)`` kernel, so the adder's weight gradient and
    its adaptive scaling see the ``(H, K)`` kernel itself, not a per-channel expansion of it.

    Quantisation (``quant``): a product takes an affine input (running range) and a symmetric per-head
    kernel; a difference ``|x - w|`` needs both on one grid, so the adder uses
    :class:`~.quant.SharedScaleFakeQuant` (one symmetric scale for the input range and the kernel). In
    eval mode the ranges are frozen, so :meth:`step` quantises exactly as :meth:`forward` once a training
    batch has calibrated them.

    Args:
        channels: ``C``, the input and output width.
        kernel_size: ``K`` (odd for centred padding).
        num_heads: ``H``, kernel rows; must divide ``channels``.
        padding: ``"centred"`` (encoder) or ``"causal"`` (decoder).
        weight_softmax: softmax-normalise each kernel row over ``K``.
        weight_dropout: DropConnect probability on the kernel (training only), in ``[0, 1)``.
        bias: add a learnable per-channel bias to the output.
        quant: fake-quantise the kernel and the mixer input for ``quant.bits``-bit training.
        op: the mixing primitive, ``OpKind.MULT`` or ``OpKind.ADD``.
        eta: adaptive gradient scaling of the adder kernel (``None``: off); ``OpKind.ADD`` only.

    Shape:
        forward: ``x (T, B, C)``, ``padding_mask (B, T)`` (``True`` = pad) -> ``(T, B, C)``.
        step: ``x (1, B, C)``, ``buffer (n, B, C)`` -> ``(1, B, C)`` or ``None``, ``buffer (n', B, C)``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        num_heads: int,
        padding: Union[str, Padding] = Padding.CENTRED,
        weight_softmax: bool = True,
        weight_dropout: float = 0.0,
        bias: bool = False,
        quant: Optional[QuantConfig] = None,
        *,
        op: OpKind,
        eta: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.padding = _parse_padding(padding)
        positive_int("channels", channels)
        positive_int("num_heads", num_heads)
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        positive_int("kernel_size", kernel_size)
        if self.padding is Padding.CENTRED and kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for centred padding, got {kernel_size}")
        probability("weight_dropout", weight_dropout, high_open=True)
        op = OpKind(op)
        if op not in (OpKind.MULT, OpKind.ADD):
            raise ValueError(f"op must be 'mult' or 'add', got {op.value!r}")
        if eta is not None and op is not OpKind.ADD:
            raise ValueError(f"eta applies to adder mixers only (op='add'), got eta={eta!r} with op={op.value!r}")
        positive_number("eta", eta, optional=True)
        self.channels = channels
        self.kernel_size = kernel_size
        self.num_heads = num_heads
        self.weight_softmax = weight_softmax
        self.weight_dropout = weight_dropout
        self.quant = quant
        self.op = op
        self.eta = eta
        self.pre: Optional[nn.Module] = None  # position-wise (C -> C) projection, set by subclasses
        self.operand_quant = operand_fake_quant(op, quant)
        self.weight = nn.Parameter(torch.empty(num_heads, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform kernel with the fans of an ``(H, 1, K)`` conv weight (as fairseq); zero bias."""
        nn.init.xavier_uniform_(self.weight.view(self.num_heads, 1, self.kernel_size))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def left_padding(self) -> int:
        """Zeros before the sequence: ``K // 2`` (centred) or ``K - 1`` (causal)."""
        return padding_sizes(self.kernel_size, self.padding)[0]

    @property
    def right_padding(self) -> int:
        """Zeros after the sequence (the streaming lookahead): ``K // 2`` (centred) or 0 (causal)."""
        return padding_sizes(self.kernel_size, self.padding)[1]

    def normalised_kernel(self) -> Tensor:
        """``dropconnect(softmax(w))`` (each step optional; DropConnect in training only), before quantisation.

        Shape: ``(H, K)``.
        """
        kernel = F.softmax(self.weight, dim=-1) if self.weight_softmax else self.weight
        if not (self.training and self.weight_dropout):  # (F.dropout's no-op costs as much as the softmax)
            return kernel
        return F.dropout(kernel, p=self.weight_dropout)

    def _operands(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Position-wise part and kernel: zero pads, ``pre``, zero pads again, fake quantisation.

        Shape: ``x (T, B, C)`` -> ``(T, B, C)`` mixer input, ``(H, K)`` kernel.
        """
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.t().unsqueeze(-1), 0.0)
        if self.pre is not None:
            x = self.pre(x)
            if padding_mask is not None:
                x = x.masked_fill(padding_mask.t().unsqueeze(-1), 0.0)
        return self.operand_quant(x, self.normalised_kernel())

    def _add_bias(self, out: Tensor) -> Tensor:
        return out if self.bias is None else out + self.bias

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3:
            raise ValueError(f"x must have shape (T, B, C), got {tuple(x.shape)}")
        if x.size(2) != self.channels:
            raise ValueError(f"x must have C = {self.channels} channels (last dim), got {x.size(2)}")

    def _check_buffer(self, buffer: Tensor, batch_size: Optional[int] = None) -> None:
        B = buffer.size(BUFFER_BATCH_DIM) if batch_size is None else batch_size
        if buffer.dim() != 3 or buffer.shape[1:] != (B, self.channels) or buffer.size(0) >= self.kernel_size:
            raise ValueError(
                f"buffer must have shape (n, B, C) = (n < {self.kernel_size}, {B}, {self.channels}), "
                f"got {tuple(buffer.shape)}"
            )

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """Mix the full sequence.

        Padded positions of ``padding_mask`` are zeroed before mixing, so a padded sentence gets the outputs
        it gets alone; the outputs *at* padded positions are not meaningful (and not zeroed).

        Shape: ``x (T, B, C)``, ``padding_mask (B, T)`` bool -> ``(T, B, C)``.
        """
        self._check_input(x)
        T, B, _ = x.shape
        if padding_mask is not None and (tuple(padding_mask.shape) != (B, T) or padding_mask.dtype != torch.bool):
            raise ValueError(
                f"padding_mask must be a bool tensor of shape (B, T) = {(B, T)}, "
                f"got {padding_mask.dtype} {tuple(padding_mask.shape)}"
            )
        seq, kernel = self._operands(x, padding_mask)
        return self._add_bias(lightweight_mix(seq, kernel, self.op, self.padding, self.eta))

    def initial_buffer(self, batch_size: int, like: Tensor) -> Tensor:
        """Buffer before the first step: the left border zeros, ``(left_padding, B, C)``, ``like``'s dtype."""
        return like.new_zeros(self.left_padding, batch_size, self.channels)

    def step(self, x: Tensor, buffer: Optional[Tensor]) -> Tuple[Optional[Tensor], Tensor]:
        """Incremental (streaming) forward of one new position; in eval mode equal to :meth:`forward`.

        ``buffer`` holds the latest (quantised) mixer inputs, oldest first, time-major as ``(n, B, C)`` (batch
        on :data:`BUFFER_BATCH_DIM`; ``None`` starts a stream with :meth:`initial_buffer`). Once ``K`` inputs
        are available the window is mixed with the same kernel and primitive as :meth:`forward`
        (:func:`mix_window`), and the buffer keeps the last ``K - 1``. Causal padding: returns the output of
        the new position. Centred padding (lookahead ``K // 2``): returns ``None`` for the first ``K // 2``
        steps, then the output of position ``t - K // 2``; :meth:`flush` returns the rest at the end of the
        stream.

        Shape: ``x (1, B, C)``, ``buffer (n, B, C)`` -> (``(1, B, C)`` or ``None``, ``(n', B, C)``).
        """
        self._check_input(x)
        if x.size(0) != 1:
            raise ValueError(f"x must hold one position, shape (1, B, C), got {tuple(x.shape)}")
        if buffer is None:
            buffer = self.initial_buffer(x.size(1), x)
        self._check_buffer(buffer, x.size(1))
        new, kernel = self._operands(x, None)
        window = torch.cat([buffer, new])
        if window.size(0) < self.kernel_size:
            return None, window
        return self._add_bias(mix_window(window, kernel, self.op, self.eta)), window[1:]

    def flush(self, buffer: Tensor) -> Tensor:
        """End of stream: the outputs still pending in ``buffer`` (centred padding), with zero right padding.

        Returns ``(min(K // 2, t), B, C)`` after ``t`` steps (empty for causal padding), so the outputs of
        :meth:`step` followed by these equal :meth:`forward` on the whole sequence.

        Shape: ``buffer (n, B, C)`` -> ``(n + K // 2 - K + 1, B, C)``.
        """
        self._check_buffer(buffer)
        pending = buffer.size(0) + self.right_padding - self.kernel_size + 1
        if pending <= 0:
            return buffer.new_zeros(0, buffer.size(BUFFER_BATCH_DIM), self.channels)
        _, kernel = self.operand_quant(buffer, self.normalised_kernel())  # buffer is on the grid already
        windows = F.pad(buffer.permute(1, 2, 0), (0, self.right_padding)).unfold(2, self.kernel_size, 1)
        return self._add_bias(mix_windows(windows, kernel, self.op, self.eta))

    def op_counts(self, input_shape: Sequence[int]) -> OpCounts:
        """Arithmetic of one :meth:`forward` on ``(T, B, C)``: ``T*B*C`` depthwise dot products of length ``K``.

        MULT: ``T*B*C*K`` mults + ``T*B*C*(K-1)`` adds; ADD: ``T*B*C*(2K-1)`` adds; plus ``T*B*C`` adds for
        a bias and the ``pre`` projection's own counts. The kernel normalisation (softmax, quantisation)
        acts on the ``H*K`` weights, not on tokens, and is not counted.
        """
        if len(input_shape) != 3 or input_shape[2] != self.channels:
            raise ValueError(f"input_shape must be (T, B, C={self.channels}), got {tuple(input_shape)}")
        T, B, C = (int(n) for n in input_shape)
        bits = self.quant.bits if self.quant is not None else 32
        counts = OpCounts.dot_products(self.op, bits, T * B * C, self.kernel_size, bias=self.bias is not None)
        return counts if self.pre is None else self.pre.op_counts(input_shape) + counts

    def extra_repr(self) -> str:
        s = (
            f"{self.channels}, kernel_size={self.kernel_size}, num_heads={self.num_heads}, "
            f"padding={self.padding.value}, op={self.op.value}, weight_softmax={self.weight_softmax}, "
            f"bias={self.bias is not None}"
        )
        if self.weight_dropout:
            s += f", weight_dropout={self.weight_dropout}"
        if self.eta is not None:
            s += f", eta={self.eta}"
        if self.quant is not None:
            s += f", quant_bits={self.quant.bits}"
        return s


class LightweightConv(LightweightMixer):
    """Lightweight convolution (multiplicative): ``y[t, b, c] = sum_j w~[h(c), j] * x[t + j - pad, b, c]``.

    True gradients (the direct kernel's own backward on CPU, autograd through :func:`band_mix` or ``conv1d``
    elsewhere: :func:`lightweight_mix`). Arguments as :class:`LightweightMixer`.

    Shape: ``x (T, B, C)`` -> ``(T, B, C)``; weight ``(H, K)``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        num_heads: int,
        padding: Union[str, Padding] = Padding.CENTRED,
        weight_softmax: bool = True,
        weight_dropout: float = 0.0,
        bias: bool = False,
        quant: Optional[QuantConfig] = None,
    ) -> None:
        super().__init__(
            channels, kernel_size, num_heads, padding, weight_softmax, weight_dropout, bias, quant, op=OpKind.MULT
        )


class LightweightAdd(LightweightMixer):
    """Lightweight adder conv: ``y[t, b, c] = -sum_j | x[t + j - pad, b, c] - w~[h(c), j] |``.

    Backward (AdderNet surrogate, by design, through the unfolding): with ``g`` the output gradient,
    ``dw~[h, j] = sum_{t, b, c in h} g[t, b, c] * (x[t + j - pad, b, c] - w~[h, j])``, then scaled by
    ``eta * sqrt(H * K) / ||dw~||_2`` (``eta=None``: no scaling); ``dx[s, b, c] = sum_{t + j - pad = s}
    g[t, b, c] * hardtanh(w~[h(c), j] - x[s, b, c])``. Arguments as :class:`LightweightMixer`.

    Shape: ``x (T, B, C)`` -> ``(T, B, C)``; weight ``(H, K)``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        num_heads: int,
        padding: Union[str, Padding] = Padding.CENTRED,
        weight_softmax: bool = True,
        weight_dropout: float = 0.0,
        bias: bool = False,
        quant: Optional[QuantConfig] = None,
        eta: Optional[float] = 0.2,
    ) -> None:
        super().__init__(
            channels, kernel_size, num_heads, padding, weight_softmax, weight_dropout, bias, quant,
            op=OpKind.ADD, eta=eta,
        )


class LightweightShiftAdd(LightweightAdd):
    """Shift linear then lightweight adder conv: ``y = LightweightAdd(ShiftLinear(x))`` (docs/method.md section 1).

    The :class:`~.shift.ShiftLinear` ``(C -> C)``, with bias and the same ``quant``, is position-wise, so
    incremental decoding buffers its outputs. Arguments as :class:`LightweightAdd`, plus:

    Args:
        shift_mode: DeepShift variant, ``"ps"`` or ``"q"``.
        shift_weight_bits: bit width of the shift weights (5: exponents in ``[-14, 0]``).
        shift_activation_bits: fixed-point width of the shift linear's input (``None``: float).
        shift_activation_frac_bits: fractional bits of that fixed-point input.

    Shape: ``x (T, B, C)`` -> ``(T, B, C)``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        num_heads: int,
        padding: Union[str, Padding] = Padding.CENTRED,
        weight_softmax: bool = True,
        weight_dropout: float = 0.0,
        bias: bool = False,
        quant: Optional[QuantConfig] = None,
        eta: Optional[float] = 0.2,
        shift_mode: str = "ps",
        shift_weight_bits: int = 5,
        shift_activation_bits: Optional[int] = None,
        shift_activation_frac_bits: Optional[int] = None,
    ) -> None:
        super().__init__(channels, kernel_size, num_heads, padding, weight_softmax, weight_dropout, bias, quant, eta)
        self.pre = ShiftLinear(
            channels,
            channels,
            bias=True,
            mode=shift_mode,
            weight_bits=shift_weight_bits,
            activation_bits=shift_activation_bits,
            activation_frac_bits=shift_activation_frac_bits,
            quant=quant,
        )
