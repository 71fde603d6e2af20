"""Elastic (weight-sharing) layers: the slicing and dropout rules of HAT / OFA supernets.

ShiftAddNAS (arXiv 2205.08119) trains its NLP supernet as HAT (arXiv 2005.14187) does: a sampled sub-layer
of width ``out x in`` uses the *front* slice ``W[:out, :in]`` of the largest layer's weight (and ``b[:out]``),
a sampled LayerNorm of width ``d`` its first ``d`` affine parameters, and dropout shrinks with the width,
``p * d / d_max``. These rules are pure functions so that the supernet's forward pass and the export of a
standalone subnet share one implementation. Slices are views (the tensor itself when nothing is cut):
gradients flow into the full tensors.
"""
from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor

from .validate import int_in_range, probability

__all__ = ["slice_linear", "slice_layer_norm", "scale_dropout"]


def _check_vector(name: str, vector: Optional[Tensor], length: int) -> None:
    if vector is not None and tuple(vector.shape) != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(vector.shape)}")


def _front(tensor: Tensor, *sizes: int) -> Tensor:
    """``tensor[:sizes[0], :sizes[1], ...]``, or ``tensor`` itself when that is the whole tensor.

    Returning the parameter itself (not a full-size view) spares autograd a ``SliceBackward``, which would
    copy the gradient into a fresh zero tensor of the full shape: the largest subnet slices nothing.
    """
    if tuple(tensor.shape[: len(sizes)]) == sizes:
        return tensor
    return tensor[tuple(slice(0, n) for n in sizes)]


def slice_linear(
    weight: Tensor, bias: Optional[Tensor], out_dim: int, in_dim: int
) -> Tuple[Tensor, Optional[Tensor]]:
    """Front slice of a max-size layer (HAT/OFA sharing): ``W[:out_dim, :in_dim]``, ``b[:out_dim]``.

    Trailing weight dimensions (a conv kernel's ``kh, kw``) are kept whole.

    Shape: weight (max_out, max_in, *), bias (max_out,) or None -> (out_dim, in_dim, *), (out_dim,) or None.

    Raises:
        ValueError: ``weight`` has fewer than 2 dimensions, ``bias`` does not match it, or ``out_dim`` /
            ``in_dim`` is not an integer in ``[1, max_out]`` / ``[1, max_in]``.
    """
    if weight.dim() < 2:
        raise ValueError(f"weight must have at least 2 dimensions (max_out, max_in, *), got {tuple(weight.shape)}")
    max_out, max_in = weight.shape[:2]
    _check_vector("bias", bias, max_out)
    int_in_range("out_dim", out_dim, 1, max_out)
    int_in_range("in_dim", in_dim, 1, max_in)
    return _front(weight, out_dim, in_dim), (None if bias is None else _front(bias, out_dim))


def slice_layer_norm(
    weight: Optional[Tensor], bias: Optional[Tensor], dim: int
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Front slice of a LayerNorm's affine parameters: ``gamma[:dim]``, ``beta[:dim]`` (None stays None).

    The sliced layer normalises over the sampled width:
    ``F.layer_norm(x[..., :dim], (dim,), gamma[:dim], beta[:dim])``.

    Shape: weight, bias (max_dim,) or None -> (dim,) or None.

    Raises:
        ValueError: both are None, their shapes differ / are not 1-D, or ``dim`` is not in ``[1, max_dim]``.
    """
    reference = weight if weight is not None else bias
    if reference is None or reference.dim() != 1:
        raise ValueError("weight or bias must be a 1-D tensor (max_dim,)")
    max_dim = reference.shape[0]
    _check_vector("weight", weight, max_dim)
    _check_vector("bias", bias, max_dim)
    int_in_range("dim", dim, 1, max_dim)
    return (None if weight is None else _front(weight, dim)), (None if bias is None else _front(bias, dim))


def scale_dropout(p: float, dim: int, max_dim: int) -> float:
    """Width-scaled dropout probability (HAT): ``p * dim / max_dim``.

    Raises:
        ValueError: ``p`` is not in ``[0, 1]``, ``max_dim`` is not a positive integer, or ``dim`` is not an
            integer in ``[1, max_dim]``.
    """
    probability("p", p)
    int_in_range("max_dim", max_dim, 1)
    int_in_range("dim", dim, 1, max_dim)
    return p * dim / max_dim
