"""Drawing and combining subnets: :func:`sample`, :func:`largest`, :func:`smallest`, :func:`sample_operators`,
HAT's :func:`mutate` and :func:`crossover`, and :func:`subnet_seed`, the per-update seed that makes every rank draw
the same subnet::

    sub = sample(space, random.Random(subnet_seed(seed, update_num)))

All randomness comes from an explicit ``random.Random``. This module needs no fairseq and no torch.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
from typing import Any, Callable, Optional, Sequence, Tuple

from ..ops.kinds import BlockType, OpKind
from .configs import SIDES, LayerConfig, SearchSpace, SubnetConfig
from .genes import check, check_value, depths, layer_genes, model_genes

__all__ = ["OPERATOR_GENES", "sample", "largest", "smallest", "sample_operators", "mutate", "crossover", "subnet_seed"]

OPERATOR_GENES: Tuple[str, ...] = ("block", "ffn_op")
"""The :class:`LayerConfig` genes that choose operators (the token mixer, the FFN's operator), not sizes."""


def _layer(space: SearchSpace, side: str, gene: Callable[[str, Tuple[Any, ...]], Any]) -> LayerConfig:
    """A layer of ``side`` whose field ``name`` is ``gene(name, allowed values)``."""
    return LayerConfig(**{name: gene(name, allowed) for name, allowed in layer_genes(space, side).items()})


def _sample_layer(space: SearchSpace, side: str, rng: random.Random) -> LayerConfig:
    return _layer(space, side, lambda _, allowed: rng.choice(allowed))


def sample(space: SearchSpace, rng: random.Random) -> SubnetConfig:
    """A subnet with every gene drawn uniformly from its allowed values (per side: depth, then each layer)."""
    dims = {name: rng.choice(allowed) for name, allowed in model_genes(space).items()}
    layers = {
        side: tuple(_sample_layer(space, side, rng) for _ in range(rng.choice(depths(space, side))))
        for side in SIDES
    }
    return SubnetConfig(**dims, **layers)


def _preferred(allowed: Tuple[Any, ...], preferred: Any) -> Any:
    """``preferred`` when the space allows it, else the space's first choice."""
    return preferred if preferred in allowed else allowed[0]


def _extreme(
    space: SearchSpace,
    pick: Callable[[Sequence[int]], int],
    block: Optional[BlockType],
    decoder_block: Optional[BlockType],
    ffn_op: Optional[OpKind],
) -> SubnetConfig:
    if decoder_block is None and block is not None:
        decoder_block, decoder_arg = block, "block (for the decoder, unless decoder_block is given)"
    else:
        decoder_arg = "decoder_block"
    chosen = {
        "encoder": {"block": _preferred(space.encoder_blocks, BlockType.ATTENTION) if block is None else block},
        "decoder": {
            "block": _preferred(space.decoder_blocks, BlockType.ATTENTION) if decoder_block is None else decoder_block
        },
    }
    check_value("block", chosen["encoder"]["block"], space.encoder_blocks)
    check_value(decoder_arg, chosen["decoder"]["block"], space.decoder_blocks)
    for side in SIDES:
        chosen[side]["ffn_op"] = _preferred(space.ffn_ops, OpKind.MULT) if ffn_op is None else ffn_op
    check_value("ffn_op", chosen["encoder"]["ffn_op"], space.ffn_ops)

    def gene(side: str, name: str, allowed: Tuple[Any, ...]) -> Any:
        return chosen[side][name] if name in chosen[side] else pick(allowed)

    dims = {name: pick(allowed) for name, allowed in model_genes(space).items()}
    layers = {
        side: (_layer(space, side, functools.partial(gene, side)),) * pick(depths(space, side)) for side in SIDES
    }
    return SubnetConfig(**dims, **layers)


def largest(
    space: SearchSpace,
    *,
    block: Optional[BlockType] = None,
    decoder_block: Optional[BlockType] = None,
    ffn_op: Optional[OpKind] = None,
) -> SubnetConfig:
    """The widest and deepest subnet: max embed, FFN, heads, depth and span, in every layer.

    By default every layer is a Transformer layer, ``attention`` with a ``mult`` FFN (for ``wmt14_en_de`` the
    Transformer-big-like net: embed 1024, FFN 4096, 16 heads, 6 + 6 layers), so that what the task validates,
    sandwich-trains and distils from as "largest" is the multiplicative net users expect. A space without
    attention (or mult) on a side falls back to that side's first block type (first FFN op).

    Args:
        block: token mixer of every layer (default: ``attention``, see above).
        decoder_block: token mixer of the decoder layers, overriding ``block`` there (needed when
            ``block`` is an encoder-only type).
        ffn_op: FFN operator of every layer (default: ``mult``, see above).

    Raises:
        ValueError: a given ``block`` / ``decoder_block`` / ``ffn_op`` is not in the space (naming it).
    """
    return _extreme(space, max, block, decoder_block, ffn_op)


def smallest(
    space: SearchSpace,
    *,
    block: Optional[BlockType] = None,
    decoder_block: Optional[BlockType] = None,
    ffn_op: Optional[OpKind] = None,
) -> SubnetConfig:
    """The narrowest and shallowest subnet: min embed, FFN, heads, depth and span.

    By default all-``attention`` with ``mult`` FFNs, as :func:`largest`; arguments as :func:`largest`.
    """
    return _extreme(space, min, block, decoder_block, ffn_op)


def sample_operators(space: SearchSpace, sub: SubnetConfig, rng: random.Random) -> SubnetConfig:
    """``sub`` with every layer's :data:`OPERATOR_GENES` redrawn uniformly from the space's allowed values.

    Widths, depths and heads stay ``sub``'s. ``sample_operators(space, largest(space), rng)`` is the operator
    sandwich's fourth subnet (``--sandwich-operators``): the largest net with random operators, so that the
    full-size hybrids an energy bound admits train as often as the all-mult largest net.
    """
    check(space, sub)
    layers = {}
    for side in SIDES:
        genes = layer_genes(space, side)
        layers[side] = tuple(
            dataclasses.replace(layer, **{name: rng.choice(genes[name]) for name in OPERATOR_GENES})
            for layer in getattr(sub, side)
        )
    return dataclasses.replace(sub, **layers)


def mutate(space: SearchSpace, sub: SubnetConfig, rng: random.Random, prob: float = 0.3) -> SubnetConfig:
    """HAT's mutation: each gene is redrawn uniformly (possibly to the same value) with probability ``prob``.

    A redrawn depth truncates the layers or appends freshly sampled ones; the genes of the kept layers are
    then redrawn one by one. ``prob=0`` returns ``sub`` unchanged.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob={prob!r} must be in [0, 1]")
    check(space, sub)

    def gene(allowed: Tuple[Any, ...], current: Any) -> Any:
        return rng.choice(allowed) if rng.random() < prob else current

    dims = {name: gene(allowed, getattr(sub, name)) for name, allowed in model_genes(space).items()}
    layers = {}
    for side in SIDES:
        old = getattr(sub, side)
        depth = gene(depths(space, side), len(old))
        kept = tuple(
            _layer(space, side, lambda name, allowed: gene(allowed, getattr(layer, name)))
            for layer in old[:depth]
        )
        layers[side] = kept + tuple(_sample_layer(space, side, rng) for _ in range(depth - len(kept)))
    return SubnetConfig(**dims, **layers)


def crossover(space: SearchSpace, a: SubnetConfig, b: SubnetConfig, rng: random.Random) -> SubnetConfig:
    """HAT's uniform crossover: each gene from ``a`` or ``b`` with probability 1/2.

    Layer genes are aligned by layer index; a layer that only the deeper parent has (the child's depth
    came from it) is taken from that parent whole.
    """
    check(space, a)
    check(space, b)

    def gene(x: Any, y: Any) -> Any:
        return x if rng.random() < 0.5 else y

    dims = {name: gene(getattr(a, name), getattr(b, name)) for name in model_genes(space)}
    layers = {}
    for side in SIDES:
        la, lb = getattr(a, side), getattr(b, side)
        depth = gene(len(la), len(lb))
        layers[side] = tuple(
            _layer(space, side, lambda name, _: gene(getattr(la[i], name), getattr(lb[i], name)))
            if i < len(la) and i < len(lb)
            else (la if i < len(la) else lb)[i]
            for i in range(depth)
        )
    return SubnetConfig(**dims, **layers)


def subnet_seed(seed: int, update_num: int) -> int:
    """The seed of the subnet drawn at ``update_num``: the same on every rank, process, platform and run.

    It is a 63-bit BLAKE2b digest of the two integers, not Python's ``hash()``: ``hash()`` of a str is
    salted per process (``PYTHONHASHSEED``); ``hash()`` of a tuple of ints is not salted but depends on the
    platform's word size.
    """
    for name, value in (("seed", seed), ("update_num", update_num)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be an int")
    digest = hashlib.blake2b(f"{seed}:{update_num}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
