"""The latency predictor's input features of a subnet (HAT's encoding). This module needs no fairseq and no torch."""
from __future__ import annotations

from enum import Enum
from typing import List

from .configs import SIDES, SearchSpace, SubnetConfig, attended_encoder_layers
from .genes import check, depths, layer_genes, model_genes

__all__ = ["predictor_features"]


def predictor_features(space: SearchSpace, sub: SubnetConfig) -> List[float]:
    """The latency predictor's input features of ``sub`` (HAT's), each in [0, 1]; the length depends on the space only.

    In order: the two embed dims and the two depths over their maxima; per side the mean FFN dim and mean
    head counts over their maxima; for the decoder the mean and max number of attended encoder layers over
    the space's maximum; then per side, layer by layer up to the maximum depth, a one-hot of the block type
    and a one-hot of the FFN operator (all zeros past the subnet's depth).
    """
    check(space, sub)
    features = [getattr(sub, name) / max(allowed) for name, allowed in model_genes(space).items()]
    features += [len(getattr(sub, side)) / max(depths(space, side)) for side in SIDES]
    for side in SIDES:
        layers = getattr(sub, side)
        for name, allowed in layer_genes(space, side).items():
            if name == "enc_dec_span":
                attended = [attended_encoder_layers(layer.enc_dec_span) for layer in layers]
                deepest = max(attended_encoder_layers(s) for s in allowed)
                features += [sum(attended) / len(attended) / deepest, max(attended) / deepest]
            elif not isinstance(allowed[0], Enum):
                features.append(sum(getattr(layer, name) for layer in layers) / len(layers) / max(allowed))
    for side in SIDES:
        layers = getattr(sub, side)
        genes = layer_genes(space, side)
        categorical = {name: allowed for name, allowed in genes.items() if isinstance(allowed[0], Enum)}
        for i in range(max(depths(space, side))):
            for name, allowed in categorical.items():
                features += [float(i < len(layers) and getattr(layers[i], name) == a) for a in allowed]
    return features
