"""The hybrid vision search space of ShiftAddNAS (arXiv 2205.08119, section 8 of the method notes; after BossNAS).

A network is a stem, then stages at decreasing resolution, then global average pooling and a linear classifier.
Each stage has a stride (its first block downsamples), a set of block choices, depth choices and width choices
(channels, front-sliced in the supernet); every block chooses its type and its expansion ratio (middle channels
``round(width * expansion)``). Block types: ``conv``, ``shift``, ``add`` (residual bottlenecks built from
multiplicative, bit-shift and adder convolutions, each followed by BatchNorm) and ``attention`` (a bottleneck
whose middle layer is multi-head self-attention over the feature map, ``softmax(q k^T / sqrt(d)) v``).

:class:`VisionSpace` defines a space (image size, channels and classes are parameters); :class:`VisionSubnet`
is one frozen, hashable network of it. :func:`check`, :func:`sample`, :func:`mutate`, :func:`crossover`,
:func:`predictor_features` (a latency predictor's inputs), :func:`largest` and :func:`smallest` serve training
and search; :data:`SPACES` holds the named spaces ``digits`` (8x8 grey), ``cifar`` (32x32 RGB) and ``imagenet``
(the original's 224 px layout). No fairseq.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from ..ops.kinds import OpKind
from ..ops.validate import positive_int
from ..space.resolve import parse_spec

__all__ = [
    "VisionBlock",
    "StageSpace",
    "VisionSpace",
    "BlockConfig",
    "StageConfig",
    "VisionSubnet",
    "SPACES",
    "get_space",
    "check",
    "sample",
    "mutate",
    "crossover",
    "predictor_features",
    "largest",
    "smallest",
    "uniform_subnet",
    "load_subnet",
]


class VisionBlock(str, Enum):
    """Block types of the vision space; the value is the name configs and command lines spell."""

    CONV = "conv"
    SHIFT = "shift"
    ADD = "add"
    ATTENTION = "attention"

    @property
    def op(self) -> Optional[OpKind]:
        """The operator of a bottleneck's three convolutions (None: attention, whose projections are mult)."""
        return {"conv": OpKind.MULT, "shift": OpKind.SHIFT, "add": OpKind.ADD}.get(self.value)


def _tuple(name: str, values: Sequence[Any], kind: type) -> Tuple[Any, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, kind) or v <= 0 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive {kind.__name__}s, got {list(values)!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates: {list(values)!r}")
    return values


def mid_channels(width: int, expansion: float) -> int:
    """Middle channels of a bottleneck: ``round(width * expansion)``."""
    return int(round(width * expansion))


@dataclass(frozen=True)
class StageSpace:
    """One stage's choices.

    Args:
        stride: 1 or 2; the stage's first block downsamples by it.
        blocks: block types allowed at this resolution.
        depths: numbers of blocks.
        widths: output channels (the supernet allocates the largest and front-slices).
    """

    stride: int
    blocks: Tuple[VisionBlock, ...]
    depths: Tuple[int, ...]
    widths: Tuple[int, ...]

    def __post_init__(self) -> None:
        if self.stride not in (1, 2):
            raise ValueError(f"stage stride must be 1 or 2, got {self.stride!r}")
        try:
            blocks = tuple(VisionBlock(b) for b in self.blocks)
        except ValueError:
            allowed = [b.value for b in VisionBlock]
            raise ValueError(f"stage blocks {list(self.blocks)!r}: each must be one of {allowed}") from None
        if not blocks or len(set(blocks)) != len(blocks):
            raise ValueError(f"stage blocks must be a non-empty list without duplicates, got {list(self.blocks)!r}")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "depths", _tuple("stage depths", self.depths, int))
        object.__setattr__(self, "widths", _tuple("stage widths", self.widths, int))

    def to_dict(self) -> Dict[str, Any]:
        return {"stride": self.stride, "blocks": [b.value for b in self.blocks], "depths": list(self.depths),
                "widths": list(self.widths)}


@dataclass(frozen=True)
class VisionSpace:
    """A hybrid vision search space.

    Args:
        name: the space's name.
        image_size: input height and width (square images).
        in_channels: input channels (1 grey, 3 RGB).
        num_classes: classifier outputs.
        stem_channels: channels of the stem's 3x3 convolution (+ BatchNorm + ReLU).
        stem_stride: the stem convolution's stride (1 or 2).
        stem_pool: a 3x3 max pool of stride 2 after the stem (the ImageNet layout).
        stages: the stages, at decreasing resolution.
        expansions: expansion ratios a block may choose (middle channels ``round(width * e)``).
        heads: attention heads (every attention middle width must be divisible by it).

    Raises:
        ValueError: any field is invalid, e.g. an image size that the strides do not divide (naming the field).
    """

    name: str
    image_size: int
    in_channels: int
    num_classes: int
    stem_channels: int
    stem_stride: int
    stem_pool: bool
    stages: Tuple[StageSpace, ...]
    expansions: Tuple[float, ...]
    heads: int

    def __post_init__(self) -> None:
        for field_name in ("image_size", "in_channels", "num_classes", "stem_channels", "heads"):
            positive_int(f"space {self.name!r}: {field_name}", getattr(self, field_name))
        if self.stem_stride not in (1, 2):
            raise ValueError(f"space {self.name!r}: stem_stride must be 1 or 2, got {self.stem_stride!r}")
        stages = tuple(s if isinstance(s, StageSpace) else StageSpace(**s) for s in self.stages)
        if not stages:
            raise ValueError(f"space {self.name!r}: stages must not be empty")
        object.__setattr__(self, "stages", stages)
        expansions = tuple(float(e) for e in self.expansions)
        object.__setattr__(self, "expansions", _tuple("expansions", expansions, float))
        if self.image_size % self.total_stride:
            raise ValueError(
                f"image_size={self.image_size} cannot be taken by space {self.name!r}: it must be a multiple of "
                f"{self.total_stride} (the product of the stem and stage strides)"
            )
        for i, stage in enumerate(stages):
            for width in stage.widths:
                for e in self.expansions:
                    mid = mid_channels(width, e)
                    if mid < 1:
                        raise ValueError(f"space {self.name!r}: stages[{i}] width {width} x expansion {e} < 1 channel")
                    if VisionBlock.ATTENTION in stage.blocks and mid % self.heads:
                        raise ValueError(
                            f"space {self.name!r}: stages[{i}] attention width {width} x expansion {e} = {mid} "
                            f"is not divisible by heads={self.heads}"
                        )

    @property
    def total_stride(self) -> int:
        stride = self.stem_stride * (2 if self.stem_pool else 1)
        for stage in self.stages:
            stride *= stage.stride
        return stride

    def resolutions(self) -> Tuple[int, ...]:
        """Output side length of each stage for :attr:`image_size` inputs."""
        size = self.image_size // (self.stem_stride * (2 if self.stem_pool else 1))
        out = []
        for stage in self.stages:
            size //= stage.stride
            out.append(size)
        return tuple(out)

    def with_input(self, image_size: Optional[int] = None, in_channels: Optional[int] = None,
                   num_classes: Optional[int] = None) -> "VisionSpace":
        """This space for another input size, channel count or number of classes (validated)."""
        changes = {k: v for k, v in (("image_size", image_size), ("in_channels", in_channels),
                                     ("num_classes", num_classes)) if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [s.to_dict() for s in self.stages]
        data["expansions"] = list(self.expansions)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VisionSpace":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"vision space: unknown field(s) {unknown} (allowed: {sorted(fields)})")
        missing = sorted(fields - set(data))
        if missing:
            raise ValueError(f"vision space: missing field(s) {missing}")
        return cls(**{**data, "stages": tuple(StageSpace(**s) for s in data["stages"]),
                      "expansions": tuple(data["expansions"])})


@dataclass(frozen=True)
class BlockConfig:
    """One block: its type and expansion ratio."""

    block: VisionBlock
    expansion: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "block", VisionBlock(self.block))
        object.__setattr__(self, "expansion", float(self.expansion))


@dataclass(frozen=True)
class StageConfig:
    """One stage: its width (output channels) and its blocks (depth = ``len(blocks)``)."""

    width: int
    blocks: Tuple[BlockConfig, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(b if isinstance(b, BlockConfig) else BlockConfig(**b)
                                                 for b in self.blocks))


@dataclass(frozen=True)
class VisionSubnet:
    """One network of a :class:`VisionSpace`: a :class:`StageConfig` per stage. Frozen and hashable."""

    stages: Tuple[StageConfig, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(s if isinstance(s, StageConfig) else StageConfig(**s)
                                                 for s in self.stages))

    def to_dict(self) -> Dict[str, Any]:
        return {"stages": [{"width": s.width, "blocks": [{"block": b.block.value, "expansion": b.expansion}
                                                          for b in s.blocks]} for s in self.stages]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VisionSubnet":
        """Read :meth:`to_dict`'s form.

        Raises:
            ValueError: the data is not a vision subnet (naming the field).
        """
        try:
            return cls(tuple(StageConfig(int(s["width"]), tuple(BlockConfig(**b) for b in s["blocks"]))
                             for s in data["stages"]))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a vision subnet (expected stages: [{{width, blocks: [{{block, expansion}}]}}]): "
                             f"{type(err).__name__} {err}") from None
        except ValueError as err:
            raise ValueError(f"not a vision subnet: {err}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def describe(self) -> str:
        """A one-line summary, e.g. ``16:conv,shift | 32:attention``."""
        return " | ".join(f"{s.width}:" + ",".join(b.block.value for b in s.blocks) for s in self.stages)


def load_subnet(spec: Union[str, Path]) -> VisionSubnet:
    """A subnet from a .yaml/.json file or inline JSON (the grammar of :func:`fairseq_shiftadd.space.parse_spec`).

    Raises:
        ValueError: (an ``InputError``) the file is missing or does not hold a vision subnet.
    """
    sub = parse_spec(str(spec), VisionSubnet, {}, "subnet")
    assert sub is not None  # no names given, so a spec is always read
    return sub


def check(space: VisionSpace, sub: VisionSubnet) -> VisionSubnet:
    """Return ``sub`` if it lies in ``space``.

    Raises:
        ValueError: one line naming the first field outside the space and its allowed values.
    """
    if len(sub.stages) != len(space.stages):
        raise ValueError(f"subnet has {len(sub.stages)} stages; space {space.name!r} has {len(space.stages)}")
    for i, (stage, allowed) in enumerate(zip(sub.stages, space.stages)):
        if stage.width not in allowed.widths:
            raise ValueError(f"stages[{i}].width={stage.width} not in allowed values {allowed.widths}")
        if len(stage.blocks) not in allowed.depths:
            raise ValueError(f"stages[{i}] depth={len(stage.blocks)} not in allowed values {allowed.depths}")
        for j, block in enumerate(stage.blocks):
            if block.block not in allowed.blocks:
                names = tuple(b.value for b in allowed.blocks)
                raise ValueError(f"stages[{i}].blocks[{j}].block={block.block.value!r} not in allowed values {names}")
            if block.expansion not in space.expansions:
                raise ValueError(
                    f"stages[{i}].blocks[{j}].expansion={block.expansion} not in allowed values {space.expansions}"
                )
    return sub


def _block(space: VisionSpace, stage: StageSpace, rng: random.Random) -> BlockConfig:
    return BlockConfig(rng.choice(stage.blocks), rng.choice(space.expansions))


def sample(space: VisionSpace, rng: random.Random) -> VisionSubnet:
    """A subnet drawn uniformly gene by gene (width, depth, then each block's type and expansion)."""
    stages = []
    for stage in space.stages:
        width, depth = rng.choice(stage.widths), rng.choice(stage.depths)
        stages.append(StageConfig(width, tuple(_block(space, stage, rng) for _ in range(depth))))
    return VisionSubnet(tuple(stages))


def mutate(space: VisionSpace, sub: VisionSubnet, rng: random.Random, prob: float) -> VisionSubnet:
    """``sub`` with each gene redrawn with probability ``prob`` (new blocks of a deeper stage are drawn fresh)."""

    def maybe(value: Any, choices: Sequence[Any]) -> Any:
        return rng.choice(choices) if rng.random() < prob else value

    stages = []
    for config, stage in zip(sub.stages, space.stages):
        width, depth = maybe(config.width, stage.widths), maybe(len(config.blocks), stage.depths)
        blocks = [BlockConfig(maybe(b.block, stage.blocks), maybe(b.expansion, space.expansions))
                  for b in config.blocks[:depth]]
        blocks += [_block(space, stage, rng) for _ in range(depth - len(blocks))]
        stages.append(StageConfig(width, tuple(blocks)))
    return VisionSubnet(tuple(stages))


def crossover(space: VisionSpace, a: VisionSubnet, b: VisionSubnet, rng: random.Random) -> VisionSubnet:
    """Uniform crossover: each gene from ``a`` or ``b`` with probability 1/2 (a block position that only one
    parent has comes from that parent)."""
    stages = []
    for sa, sb in zip(a.stages, b.stages):
        width = rng.choice((sa.width, sb.width))
        depth = rng.choice((len(sa.blocks), len(sb.blocks)))
        blocks = []
        for j in range(depth):
            options = [s.blocks[j] for s in (sa, sb) if j < len(s.blocks)]
            blocks.append(BlockConfig(rng.choice(options).block, rng.choice(options).expansion))
        stages.append(StageConfig(width, tuple(blocks)))
    return VisionSubnet(tuple(stages))


def uniform_subnet(space: VisionSpace, widths: Sequence[int], depths: Sequence[int],
                   blocks: Sequence[VisionBlock], expansion: float) -> VisionSubnet:
    """The subnet with the given widths and depths, one block type per stage and one expansion (checked)."""
    return check(space, VisionSubnet(tuple(
        StageConfig(w, tuple(BlockConfig(k, expansion) for _ in range(d)))
        for w, d, k in zip(widths, depths, blocks))))


def largest(space: VisionSpace, block: Optional[VisionBlock] = None) -> VisionSubnet:
    """Widest, deepest subnet with the largest expansion; blocks ``block`` (default: each stage's first choice)."""
    return uniform_subnet(space, [max(s.widths) for s in space.stages], [max(s.depths) for s in space.stages],
                          [block or s.blocks[0] for s in space.stages], max(space.expansions))


def smallest(space: VisionSpace, block: Optional[VisionBlock] = None) -> VisionSubnet:
    """Narrowest, shallowest subnet with the smallest expansion (blocks as :func:`largest`)."""
    return uniform_subnet(space, [min(s.widths) for s in space.stages], [min(s.depths) for s in space.stages],
                          [block or s.blocks[0] for s in space.stages], min(space.expansions))


def predictor_features(space: VisionSpace, sub: VisionSubnet) -> List[float]:
    """Predictor features: per stage width / max, depth / max, then per block position (up to the largest
    depth) a one-hot of the stage's block choices and expansion / max (zeros beyond the depth)."""
    features: List[float] = []
    max_expansion = max(space.expansions)
    for config, stage in zip(check(space, sub).stages, space.stages):
        features += [config.width / max(stage.widths), len(config.blocks) / max(stage.depths)]
        for j in range(max(stage.depths)):
            block = config.blocks[j] if j < len(config.blocks) else None
            features += [float(block is not None and block.block is k) for k in stage.blocks]
            features.append(0.0 if block is None else block.expansion / max_expansion)
    return features


_C, _S, _A, _T = VisionBlock.CONV, VisionBlock.SHIFT, VisionBlock.ADD, VisionBlock.ATTENTION

SPACES: Dict[str, VisionSpace] = {
    # 8x8 grey digits: resolutions 8 / 4 / 2.
    "digits": VisionSpace(
        "digits", image_size=8, in_channels=1, num_classes=10, stem_channels=16, stem_stride=1, stem_pool=False,
        stages=(StageSpace(1, (_C, _S, _A), (1, 2), (16, 24)),
                StageSpace(2, (_T, _C, _S, _A), (1, 2), (32, 48)),
                StageSpace(2, (_T, _C), (1, 2), (48, 64))),
        expansions=(0.5, 1.0), heads=4,
    ),
    # 32x32 RGB (CIFAR): resolutions 32 / 16 / 8 / 4.
    "cifar": VisionSpace(
        "cifar", image_size=32, in_channels=3, num_classes=10, stem_channels=32, stem_stride=1, stem_pool=False,
        stages=(StageSpace(1, (_C, _S, _A), (1, 2), (32, 48)),
                StageSpace(2, (_C, _S, _A), (1, 2, 3), (64, 96)),
                StageSpace(2, (_T, _C, _S, _A), (2, 3, 4), (128, 192)),
                StageSpace(2, (_T, _C), (1, 2), (256, 384))),
        expansions=(0.25, 0.5), heads=4,
    ),
    # The original's 224 px layout (BossNAS-like): 56 / 28 / 14 / 7, up to 2 + 4 + 5 + 5 = 16 blocks.
    "imagenet": VisionSpace(
        "imagenet", image_size=224, in_channels=3, num_classes=1000, stem_channels=64, stem_stride=2, stem_pool=True,
        stages=(StageSpace(1, (_C, _A, _S), (1, 2), (192, 256)),
                StageSpace(2, (_C, _A, _S), (2, 3, 4), (384, 512)),
                StageSpace(2, (_T, _C, _A, _S), (3, 4, 5), (768, 1024)),
                StageSpace(2, (_T, _C), (3, 4, 5), (1536, 2048))),
        expansions=(0.25,), heads=8,
    ),
}
"""The named spaces (see the README's vision space table)."""


def get_space(name: str, image_size: Optional[int] = None, in_channels: Optional[int] = None,
              num_classes: Optional[int] = None) -> VisionSpace:
    """A named space, optionally for another input size, channel count or number of classes.

    Raises:
        ValueError: an unknown name (listing the known ones) or an input the space cannot take.
    """
    if name not in SPACES:
        raise ValueError(f"vision space {name!r} not in allowed values {tuple(SPACES)}")
    return SPACES[name].with_input(image_size, in_channels, num_classes)
