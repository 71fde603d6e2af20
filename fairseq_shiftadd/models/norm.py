"""Elastic LayerNorm of the translation supernet: allocated at the largest width, front-sliced to the input's."""
from __future__ import annotations

from typing import Dict

import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.elastic import slice_layer_norm

__all__ = ["ElasticLayerNorm"]


class ElasticLayerNorm(nn.LayerNorm):
    """LayerNorm allocated at ``max_dim``; normalises over the input's width ``d`` with ``gamma[:d], beta[:d]``.

    Shape: ``(*, d)`` -> ``(*, d)``, ``d <= max_dim``.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        weight, bias = slice_layer_norm(self.weight, self.bias, x.size(-1))
        return F.layer_norm(x, (x.size(-1),), weight, bias, self.eps)

    def export(self, dim: int) -> Dict[str, Tensor]:
        weight, bias = slice_layer_norm(self.weight, self.bias, dim)
        return {"weight": weight, "bias": bias}
