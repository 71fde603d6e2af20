"""The typed, serialisable NLP search space of ShiftAddNAS (arXiv 2205.08119, sections 2 and 4 of method.md).

A :class:`SearchSpace` lists the allowed values of every gene; a :class:`SubnetConfig` is one point of
it: two embedding widths plus one frozen :class:`LayerConfig` per encoder and decoder layer (the decoder
depth is ``len(decoder)``). All three are frozen dataclasses of ints, strings, enums and tuples, so they are
hashable (fitness caches key on them) and round-trip through dicts, JSON and YAML, with the enums
spelled as their method names (``"attention+lightweight_add"``, ``"shift"``).

Genes. Per model: ``encoder_embed_dim``, ``decoder_embed_dim`` and the two depths. Per layer: ``block``
(the token mixer), ``ffn_dim``, ``num_heads`` (self-attention heads, also the lightweight-conv heads of
the layer) and ``ffn_op`` (whether the FFN multiplies, shifts or adds: this project's extension; the
paper's FFNs were always ``mult``); per decoder layer also ``cross_heads`` (encoder-decoder attention
heads) and ``enc_dec_span`` (HAT's arbitrary encoder-decoder attention: the decoder layer attends to the
last ``attended_encoder_layers(span)`` encoder layers, concatenated along time).

Functions: :func:`check` validates a subnet against a space, :func:`sample` draws every gene uniformly,
:func:`mutate` and :func:`crossover` are the evolutionary operators (HAT's), :func:`largest` and
:func:`smallest` give the extreme all-attention, mult-FFN subnets, :func:`encode` the latency-predictor features, and
:func:`subnet_seed` the per-update seed that makes every rank draw the same subnet::

    sub = sample(space, random.Random(subnet_seed(seed, update_num)))

All randomness comes from an explicit ``random.Random``. This module needs no fairseq and no torch.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

import yaml

from ..cli_errors import InputError
from ..ops.kinds import BlockType, OpKind

__all__ = [
    "BLOCK_DETAILS",
    "LayerConfig",
    "SubnetConfig",
    "SearchSpace",
    "SPACES",
    "get_space",
    "RESTRICTABLE",
    "parse_restriction",
    "restrict",
    "attended_encoder_layers",
    "check",
    "sample",
    "largest",
    "smallest",
    "NAMED_SUBNETS",
    "parse_subnet_spec",
    "resolve_subnet",
    "mutate",
    "crossover",
    "subnet_seed",
    "encode",
]

_SPAN_LAYERS = {-1: 1, 1: 2, 2: 3}
_SIDES = ("encoder", "decoder")
BLOCK_DETAILS = ("two_branch_qkv_dim", "lightweight_kernel_heads", "two_branch_kernel_heads")
"""The :class:`SearchSpace` fields that are block details, not genes (the models' flags of the same names)."""
_KERNEL_HEADS_FIELD = {False: "lightweight_kernel_heads", True: "two_branch_kernel_heads"}  # by has_attention

_T = TypeVar("_T", bound="_Serialisable")


def attended_encoder_layers(span: int) -> int:
    """Number of last encoder layers an ``enc_dec_span`` attends to: -1 -> 1, 1 -> 2, 2 -> 3."""
    if span not in _SPAN_LAYERS:
        raise ValueError(f"enc_dec_span={span!r} not in allowed values {_fmt_values(tuple(_SPAN_LAYERS))}")
    return _SPAN_LAYERS[span]


# ----------------------------------------------------------------------------------------------
# Typed fields and (de)serialisation, shared by the three dataclasses.


def _fmt(value: Any) -> str:
    return repr(value.value) if isinstance(value, Enum) else repr(value)


def _fmt_values(values: Sequence[Any]) -> str:
    return "(" + ", ".join(_fmt(v) for v in values) + ")"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any, path: str, *, plain: bool) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it.

    With ``plain`` (data from JSON/YAML), lists become tuples, strings enums and mappings dataclasses;
    without it the value must already have the exact type (tuples, enum members, dataclass instances).
    """
    if typing.get_origin(tp) is Union:  # Optional[X]
        (inner,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return None if value is None else _convert(inner, value, path, plain=plain)
    if typing.get_origin(tp) is tuple:  # Tuple[X, ...]
        if not (isinstance(value, tuple) or (plain and isinstance(value, list))):
            raise ValueError(f"{path}={value!r} must be a {'list' if plain else 'tuple'}")
        item = typing.get_args(tp)[0]
        return tuple(_convert(item, v, f"{path}[{i}]", plain=plain) for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, Enum):
        if isinstance(value, tp):
            return value
        if not (plain and isinstance(value, str)):
            raise ValueError(f"{path}={value!r} must be a {tp.__name__}")
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{path}={value!r} not in allowed values {_fmt_values(tuple(tp))}") from None
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if plain and isinstance(value, Mapping):
            return _dataclass_from_plain(tp, value, path)
        raise ValueError(f"{path}={value!r} must be a {'mapping' if plain else tp.__name__}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{path}={value!r} must be an int")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{path}={value!r} must be a str")
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def _dataclass_from_plain(cls: type, data: Mapping[str, Any], path: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [str(key) for key in data if key not in fields]
    if unknown:
        raise ValueError(f"{_join(path, unknown[0])}: unknown key (expected {_fmt_values(tuple(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(_hints(cls)[name], data[name], _join(path, name), plain=True)
        elif f.default is dataclasses.MISSING:
            raise ValueError(f"{_join(path, name)}: missing key")
    return cls(**kwargs)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):  # a None that is the field's default is left out
        return {
            f.name: _to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (getattr(value, f.name) is None and f.default is None)
        }
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


class _Serialisable:
    """Typed fields checked on construction; ``to_dict``/``from_dict``, JSON, YAML, ``save``/``load``."""

    def __post_init__(self) -> None:
        cls = type(self)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _convert(_hints(cls)[f.name], getattr(self, f.name), f"{cls.__name__}.{f.name}", plain=False)

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (dicts, lists, ints, strings): enums as their values, ``None`` defaults left out."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls: Type[_T], data: Mapping[str, Any]) -> _T:
        """Inverse of :meth:`to_dict`; fields with defaults may be omitted.

        Raises:
            ValueError: naming the field path (``decoder[2].block``) of a missing or unknown key, a value of
                the wrong type or an unknown enum string (with the allowed values).
        """
        try:
            if not isinstance(data, Mapping):
                raise ValueError(f"expected a mapping, got {type(data).__name__}")
            return _dataclass_from_plain(cls, data, "")
        except ValueError as err:
            raise ValueError(f"{cls.__name__}.from_dict: {err}") from None

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls: Type[_T], text: str) -> _T:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)

    @classmethod
    def from_yaml(cls: Type[_T], text: str) -> _T:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{cls.__name__}.from_yaml: invalid YAML: {err}") from None
        return cls.from_dict(data)

    def save(self, path: Union[str, Path]) -> None:
        """Write to ``path`` as JSON (``.json``) or YAML (``.yaml``, ``.yml``)."""
        path = Path(path)
        path.write_text(self.to_json(indent=2) + "\n" if _is_json(path) else self.to_yaml(), encoding="utf-8")

    @classmethod
    def load(cls: Type[_T], path: Union[str, Path]) -> _T:
        """Read a file written by :meth:`save` (format chosen by the suffix)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        return cls.from_json(text) if _is_json(path) else cls.from_yaml(text)


def _is_json(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"path={str(path)!r}: suffix must be .json, .yaml or .yml")
    return suffix == ".json"


# ----------------------------------------------------------------------------------------------
# The three configs.


@dataclass(frozen=True)
class LayerConfig(_Serialisable):
    """One encoder or decoder layer of a subnet.

    Args:
        block: token mixer of the layer.
        ffn_dim: hidden width of the FFN.
        num_heads: self-attention heads; also the kernel rows of the layer's lightweight conv, unless the
            space fixes them (:meth:`SearchSpace.kernel_heads`).
        ffn_op: how the FFN's two linears compute (``mult``, ``shift`` or ``add``).
        cross_heads: decoder only: encoder-decoder attention heads (``None`` in the encoder).
        enc_dec_span: decoder only: which encoder outputs the layer attends to, -1 = the last layer,
            1 = the last two, 2 = the last three (see :func:`attended_encoder_layers`); ``None`` in the encoder.
    """

    block: BlockType
    ffn_dim: int
    num_heads: int
    ffn_op: OpKind = OpKind.MULT
    cross_heads: Optional[int] = None
    enc_dec_span: Optional[int] = None


@dataclass(frozen=True)
class SubnetConfig(_Serialisable):
    """One subnet: the embedding widths and one :class:`LayerConfig` per layer (depth = tuple length)."""

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder: Tuple[LayerConfig, ...]
    decoder: Tuple[LayerConfig, ...]


@dataclass(frozen=True)
class SearchSpace(_Serialisable):
    """The allowed values of every gene. The space validates itself on construction.

    Args:
        name: the space's name (a key of :data:`SPACES` for the shipped ones).
        encoder_embed_dims, decoder_embed_dims: embedding widths (one per model side).
        encoder_ffn_dims, decoder_ffn_dims: FFN hidden widths (per layer).
        encoder_heads, decoder_self_heads, decoder_cross_heads: head counts (per layer).
        encoder_layers, decoder_layers: depths.
        enc_dec_spans: encoder-decoder spans (per decoder layer), a subset of ``(-1, 1, 2)``.
        encoder_blocks, decoder_blocks: token mixers (per layer); decoder ones must contain attention.
        ffn_ops: FFN operators (per layer); ``(OpKind.MULT,)`` reproduces the paper's space.
        kernel_sizes: lightweight-conv kernel size by layer index (encoder and decoder alike); odd, one per
            layer of the deepest side when the space has lightweight blocks, may be empty otherwise.
        qkv_dim: attention Q/K/V width, fixed: the head count only changes ``head_dim = qkv_dim / heads``.
        two_branch_qkv_dim: Q/K/V width of the attention branch of ``attention+X`` blocks; 0 (default) =
            ``qkv_dim / 2``, the original ShiftAddNAS code used ``qkv_dim`` (512). See :meth:`attention_qkv_dim`.
        lightweight_kernel_heads: kernel rows of a standalone ``lightweight_*`` block; 0 (default) = the
            layer's ``num_heads``, the original used 16. See :meth:`kernel_heads`.
        two_branch_kernel_heads: kernel rows of the lightweight branch of ``attention+X``; 0 (default) = the
            layer's ``num_heads``, the original used 4.

    The last three are block details, not genes: they are fixed per space (the models' ``--two-branch-qkv-dim``,
    ``--lightweight-kernel-heads`` and ``--two-branch-kernel-heads`` set them on the space a model is built over).

    Rules checked (``ValueError`` naming the field): choices non-empty, without duplicates, positive; embed
    dims even and ``embed / 2`` divisible by every self-attention head count of that side (two-branch
    blocks split channels in halves, and the lightweight conv splits its channels into heads);
    ``qkv_dim`` divisible by every head count, and by twice every self-attention head count of a side with
    two-branch blocks (so that their attention branch may use ``qkv_dim / 2``), or ``two_branch_qkv_dim`` (when
    set) divisible by those head counts; a fixed kernel head count divides the width of its lightweight blocks
    (``embed`` standalone, ``embed / 2`` in two-branch blocks); every span attends to no more than the shallowest
    encoder; decoder blocks contain attention.
    """

    name: str
    encoder_embed_dims: Tuple[int, ...]
    decoder_embed_dims: Tuple[int, ...]
    encoder_ffn_dims: Tuple[int, ...]
    decoder_ffn_dims: Tuple[int, ...]
    encoder_heads: Tuple[int, ...]
    decoder_self_heads: Tuple[int, ...]
    decoder_cross_heads: Tuple[int, ...]
    encoder_layers: Tuple[int, ...]
    decoder_layers: Tuple[int, ...]
    enc_dec_spans: Tuple[int, ...]
    encoder_blocks: Tuple[BlockType, ...]
    decoder_blocks: Tuple[BlockType, ...]
    ffn_ops: Tuple[OpKind, ...]
    kernel_sizes: Tuple[int, ...]
    qkv_dim: int
    two_branch_qkv_dim: int = 0
    lightweight_kernel_heads: int = 0
    two_branch_kernel_heads: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"SearchSpace {self.name!r}:"
        if not self.name:
            raise ValueError(f"{where} name must be non-empty")
        not_choices = ("name", "kernel_sizes", "qkv_dim") + BLOCK_DETAILS
        choice_fields = [f.name for f in dataclasses.fields(self) if f.name not in not_choices]
        for name in choice_fields:
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{where} {name} must be non-empty")
            if len(set(values)) != len(values):
                raise ValueError(f"{where} {name}={_fmt_values(values)} has duplicates")
        for name in [n for n in choice_fields if n.endswith(("_dims", "_heads", "_layers"))] + ["kernel_sizes"]:
            if any(v <= 0 for v in getattr(self, name)):
                raise ValueError(f"{where} {name}={_fmt_values(getattr(self, name))} must be positive")
        if self.qkv_dim <= 0:
            raise ValueError(f"{where} qkv_dim={self.qkv_dim} must be positive")
        for name in BLOCK_DETAILS:
            if getattr(self, name) < 0:
                raise ValueError(f"{where} {name}={getattr(self, name)} must be 0 (the default) or positive")
        for field_name in ("encoder_heads", "decoder_self_heads", "decoder_cross_heads"):
            for heads in getattr(self, field_name):
                if self.qkv_dim % heads:
                    raise ValueError(
                        f"{where} qkv_dim={self.qkv_dim} not divisible by {field_name} value {heads}"
                    )
        for side, heads_field in (("encoder", "encoder_heads"), ("decoder", "decoder_self_heads")):
            two_branch = any(b.has_attention and b.lightweight_part for b in getattr(self, f"{side}_blocks"))
            for heads in getattr(self, heads_field):
                if two_branch and not self.two_branch_qkv_dim and self.qkv_dim % (2 * heads):
                    raise ValueError(
                        f"{where} qkv_dim={self.qkv_dim} not divisible by 2 * {heads_field} value {heads} "
                        f"(two-branch {side} blocks give attention qkv_dim / 2)"
                    )
                if two_branch and self.two_branch_qkv_dim % heads:
                    raise ValueError(
                        f"{where} two_branch_qkv_dim={self.two_branch_qkv_dim} not divisible by {heads_field} "
                        f"value {heads}"
                    )
                for dim in getattr(self, f"{side}_embed_dims"):
                    if dim % 2 or (dim // 2) % heads:
                        raise ValueError(
                            f"{where} {side}_embed_dims value {dim} must be even with half divisible by "
                            f"{heads_field} value {heads}"
                        )
        for side in _SIDES:
            for block in getattr(self, f"{side}_blocks"):
                fixed_name = _KERNEL_HEADS_FIELD[block.has_attention]
                fixed = getattr(self, fixed_name)
                for dim in getattr(self, f"{side}_embed_dims") if block.lightweight_part and fixed else ():
                    if self.mixer_width(block, dim) % fixed:
                        raise ValueError(
                            f"{where} {fixed_name}={fixed} does not divide the {self.mixer_width(block, dim)} "
                            f"channels of {block.value!r} at {side}_embed_dims value {dim}"
                        )
        bad_blocks = [b for b in self.decoder_blocks if not b.has_attention]
        if bad_blocks:
            raise ValueError(f"{where} decoder_blocks must contain attention, got {_fmt_values(bad_blocks)}")
        for span in self.enc_dec_spans:
            if span not in _SPAN_LAYERS:
                raise ValueError(
                    f"{where} enc_dec_spans value {span} not in allowed values {_fmt_values(tuple(_SPAN_LAYERS))}"
                )
            if attended_encoder_layers(span) > min(self.encoder_layers):
                raise ValueError(
                    f"{where} enc_dec_spans value {span} attends to {attended_encoder_layers(span)} encoder "
                    f"layers, more than encoder_layers value {min(self.encoder_layers)}"
                )
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"{where} kernel_sizes={_fmt_values(self.kernel_sizes)} must be odd")
        depth = max(self.max_encoder_layers, self.max_decoder_layers)
        lightweight = any(b.lightweight_part for b in self.encoder_blocks + self.decoder_blocks)
        if lightweight and len(self.kernel_sizes) < depth:
            raise ValueError(
                f"{where} kernel_sizes={_fmt_values(self.kernel_sizes)} needs one size per layer ({depth}) "
                "for the lightweight blocks"
            )

    @staticmethod
    def mixer_width(block: BlockType, dim: int) -> int:
        """Channels each branch of ``block`` mixes at model width ``dim``: ``dim / 2`` in ``attention+X``, else ``dim``."""
        return dim // 2 if block.has_attention and block.lightweight_part else dim

    def attention_qkv_dim(self, block: BlockType) -> int:
        """Q/K/V width of ``block``'s attention: ``qkv_dim``, or in ``attention+X`` ``two_branch_qkv_dim``
        (default ``qkv_dim / 2``)."""
        if block.has_attention and block.lightweight_part:
            return self.two_branch_qkv_dim or self.qkv_dim // 2
        return self.qkv_dim

    def kernel_heads(self, block: BlockType, num_heads: int) -> int:
        """Rows of ``block``'s lightweight kernel for a layer of ``num_heads`` heads: the fixed
        ``lightweight_kernel_heads`` / ``two_branch_kernel_heads`` when set, else ``num_heads``."""
        return getattr(self, _KERNEL_HEADS_FIELD[block.has_attention]) or num_heads

    @property
    def max_encoder_embed_dim(self) -> int:
        return max(self.encoder_embed_dims)

    @property
    def max_decoder_embed_dim(self) -> int:
        return max(self.decoder_embed_dims)

    @property
    def max_encoder_ffn_dim(self) -> int:
        return max(self.encoder_ffn_dims)

    @property
    def max_decoder_ffn_dim(self) -> int:
        return max(self.decoder_ffn_dims)

    @property
    def max_encoder_heads(self) -> int:
        return max(self.encoder_heads)

    @property
    def max_decoder_self_heads(self) -> int:
        return max(self.decoder_self_heads)

    @property
    def max_decoder_cross_heads(self) -> int:
        return max(self.decoder_cross_heads)

    @property
    def max_encoder_layers(self) -> int:
        return max(self.encoder_layers)

    @property
    def max_decoder_layers(self) -> int:
        return max(self.decoder_layers)


# ----------------------------------------------------------------------------------------------
# Shipped spaces.

_WMT14_EN_DE = SearchSpace(
    name="wmt14_en_de",
    encoder_embed_dims=(1024, 768, 512),
    decoder_embed_dims=(1024, 768, 512),
    encoder_ffn_dims=(4096, 3072, 2048, 1024),
    decoder_ffn_dims=(4096, 3072, 2048, 1024),
    encoder_heads=(16, 8, 4),
    decoder_self_heads=(16, 8, 4),
    decoder_cross_heads=(16, 8, 4),
    encoder_layers=(6,),
    decoder_layers=(1, 2, 3, 4, 5, 6),
    enc_dec_spans=(-1, 1, 2),
    encoder_blocks=tuple(BlockType),
    decoder_blocks=tuple(b for b in BlockType if b.has_attention),
    ffn_ops=(OpKind.MULT, OpKind.SHIFT, OpKind.ADD),
    kernel_sizes=(3, 7, 15, 31, 31, 31),
    qkv_dim=512,
)

SPACES: Dict[str, SearchSpace] = {
    space.name: space
    for space in (
        _WMT14_EN_DE,
        dataclasses.replace(_WMT14_EN_DE, name="wmt14_en_fr", decoder_ffn_dims=(3072, 2048, 1024)),
        SearchSpace(  # HAT (arXiv 2005.14187): attention only, multiplicative FFNs
            name="hat_wmt14",
            encoder_embed_dims=(640, 512),
            decoder_embed_dims=(640, 512),
            encoder_ffn_dims=(3072, 2048, 1024),
            decoder_ffn_dims=(3072, 2048, 1024),
            encoder_heads=(8, 4),
            decoder_self_heads=(8, 4),
            decoder_cross_heads=(8, 4),
            encoder_layers=(6,),
            decoder_layers=(1, 2, 3, 4, 5, 6),
            enc_dec_spans=(-1, 1, 2),
            encoder_blocks=(BlockType.ATTENTION,),
            decoder_blocks=(BlockType.ATTENTION,),
            ffn_ops=(OpKind.MULT,),
            kernel_sizes=(),
            qkv_dim=512,
        ),
        SearchSpace(  # HAT's IWSLT14 De-En widths (arXiv 2005.14187) with every block type and FFN operator
            name="iwslt14_de_en",
            encoder_embed_dims=(640, 512),
            decoder_embed_dims=(640, 512),
            encoder_ffn_dims=(2048, 1024, 512),
            decoder_ffn_dims=(2048, 1024, 512),
            encoder_heads=(4, 2),
            decoder_self_heads=(4, 2),
            decoder_cross_heads=(4, 2),
            encoder_layers=(6,),
            decoder_layers=(1, 2, 3, 4, 5, 6),
            enc_dec_spans=(-1, 1, 2),
            encoder_blocks=tuple(BlockType),
            decoder_blocks=tuple(b for b in BlockType if b.has_attention),
            ffn_ops=(OpKind.MULT, OpKind.SHIFT, OpKind.ADD),
            kernel_sizes=(3, 7, 15, 31, 31, 31),
            qkv_dim=512,
        ),
        SearchSpace(  # the CPU demo (scripts/demo.sh): every operator, two widths and depths; largest = the baseline
            name="demo",
            encoder_embed_dims=(128, 64),
            decoder_embed_dims=(128, 64),
            encoder_ffn_dims=(512, 256),
            decoder_ffn_dims=(512, 256),
            encoder_heads=(4,),
            decoder_self_heads=(4,),
            decoder_cross_heads=(4,),
            encoder_layers=(2, 1),
            decoder_layers=(2, 1),
            enc_dec_spans=(-1,),
            encoder_blocks=tuple(b for b in BlockType if b.has_attention),
            decoder_blocks=tuple(b for b in BlockType if b.has_attention),
            ffn_ops=(OpKind.MULT, OpKind.SHIFT, OpKind.ADD),
            kernel_sizes=(3, 7),
            qkv_dim=128,
        ),
        SearchSpace(  # every block type and FFN operator at sizes a 2-core CPU trains in minutes
            name="tiny",
            encoder_embed_dims=(128, 64),
            decoder_embed_dims=(128, 64),
            encoder_ffn_dims=(512, 256),
            decoder_ffn_dims=(512, 256),
            encoder_heads=(4, 2),
            decoder_self_heads=(4, 2),
            decoder_cross_heads=(4, 2),
            encoder_layers=(2,),
            decoder_layers=(1, 2),
            enc_dec_spans=(-1, 1),
            encoder_blocks=tuple(BlockType),
            decoder_blocks=tuple(b for b in BlockType if b.has_attention),
            ffn_ops=(OpKind.MULT, OpKind.SHIFT, OpKind.ADD),
            kernel_sizes=(3, 7),
            qkv_dim=128,
        ),
    )
}
"""The shipped spaces by name: ``wmt14_en_de`` and ``wmt14_en_fr`` (the paper's, plus FFN operators),
``hat_wmt14`` (HAT's), ``iwslt14_de_en`` (HAT's IWSLT widths with this project's operators), ``demo`` (the
CPU demo's: every operator per layer, i.e. the token mixers attention and attention + lightweight conv, add or
shift-add, and mult, shift or add FFNs; embed 128 or 64, FFN 512 or 256, 1 or 2 layers per side, so that energy
spans 2.7x under the streaming accounting at beam 5 and 9x under the original; its largest subnet is the demo's
Transformer baseline) and ``tiny`` (for CPU tests)."""


def get_space(name: str) -> SearchSpace:
    """The shipped space called ``name``; :class:`InputError` (a ``ValueError``) listing the names otherwise."""
    if name not in SPACES:
        raise InputError(f"space name={name!r} not in allowed values {_fmt_values(tuple(SPACES))}")
    return SPACES[name]


# ----------------------------------------------------------------------------------------------
# Sub-spaces: the same supernet searched over fewer choices (e.g. HAT's space inside the demo's).

RESTRICTABLE: Tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SearchSpace) if f.name not in ("name", "kernel_sizes", "qkv_dim") + BLOCK_DETAILS
)
"""The :class:`SearchSpace` fields a restriction may narrow: the gene choices (not the kernel sizes, ``qkv_dim`` or
the :data:`BLOCK_DETAILS`, which are fixed per space)."""


def _restriction_fields(key: str) -> Tuple[str, ...]:
    """The fields a restriction key names: a field, or ``X`` for both ``encoder_X`` and ``decoder_X``."""
    if key in RESTRICTABLE:
        return (key,)
    pair = (f"encoder_{key}", f"decoder_{key}")
    if all(name in RESTRICTABLE for name in pair):
        return pair
    shorthands = sorted({n.split("_", 1)[1] for n in RESTRICTABLE if n.startswith("encoder_")}
                        & {n.split("_", 1)[1] for n in RESTRICTABLE if n.startswith("decoder_")})
    raise ValueError(f"restriction {key!r}: not a gene field; allowed: {', '.join(RESTRICTABLE + tuple(shorthands))}")


def parse_restriction(items: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """Parse ``FIELD=V1,V2`` items (the search's ``--restrict``) into ``{field: (value strings, ...)}``.

    ``FIELD`` is one of :data:`RESTRICTABLE`, or a shorthand ``X`` for both ``encoder_X`` and ``decoder_X``
    (``blocks``, ``embed_dims``, ``ffn_dims``, ``layers``), e.g. ``["blocks=attention", "ffn_ops=mult"]``:
    HAT's space. Values are checked against a space by :func:`restrict`.

    Raises:
        ValueError: an item without ``=`` or values, an unknown field, or a field given twice.
    """
    out: Dict[str, Tuple[str, ...]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parsed = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not parsed:
            raise ValueError(f"restriction {item!r}: expected FIELD=VALUE[,VALUE...]")
        for name in _restriction_fields(key.strip()):
            if name in out:
                raise ValueError(f"restriction {item!r}: {name} restricted twice")
            out[name] = parsed
    return out


def restrict(space: SearchSpace, choices: Mapping[str, Sequence[Any]]) -> SearchSpace:
    """The sub-space of ``space`` whose fields in ``choices`` allow only the given values.

    Every subnet of the result passes :func:`check` against ``space`` (its values are a subset of each field's,
    and the fields left out are kept), so a supernet trained on ``space`` evaluates it with inherited weights.
    The result is named ``"<space>|<field>=<values>|..."`` (the search's resume fingerprint tells them apart).
    Values may be strings (``"attention"``, ``"256"``, from :func:`parse_restriction`) or typed values.

    Raises:
        ValueError: an unknown field, a value not among the field's values in ``space`` (naming both), or a
            sub-space that breaks a :class:`SearchSpace` rule.
    """
    narrowed: Dict[str, Tuple[Any, ...]] = {}
    for name, values in choices.items():
        if name not in RESTRICTABLE:
            raise ValueError(f"restriction {name!r}: not a gene field; allowed: {', '.join(RESTRICTABLE)}")
        allowed = getattr(space, name)
        kept = []
        for value in values:
            match = [a for a in allowed if str(_to_plain(a)) == str(_to_plain(value))]
            if not match:
                raise ValueError(
                    f"restriction {name}={_to_plain(value)!r} not in space {space.name!r}'s allowed values "
                    f"{_fmt_values(allowed)}"
                )
            kept.append(match[0])
        narrowed[name] = tuple(dict.fromkeys(kept))
    label = "".join(f"|{name}={','.join(str(_to_plain(v)) for v in vals)}" for name, vals in narrowed.items())
    return dataclasses.replace(space, name=space.name + label, **narrowed)


# ----------------------------------------------------------------------------------------------
# Genes: every function below walks these tables, so a gene added here is sampled, checked,
# mutated, crossed and encoded alike.


def _model_genes(space: SearchSpace) -> Dict[str, Tuple[int, ...]]:
    return {"encoder_embed_dim": space.encoder_embed_dims, "decoder_embed_dim": space.decoder_embed_dims}


def _depths(space: SearchSpace, side: str) -> Tuple[int, ...]:
    return space.encoder_layers if side == "encoder" else space.decoder_layers


def _layer_genes(space: SearchSpace, side: str) -> Dict[str, Tuple[Any, ...]]:
    """Allowed values of each :class:`LayerConfig` field of one side; fields left out must stay ``None``."""
    if side == "encoder":
        return {
            "block": space.encoder_blocks,
            "ffn_dim": space.encoder_ffn_dims,
            "num_heads": space.encoder_heads,
            "ffn_op": space.ffn_ops,
        }
    return {
        "block": space.decoder_blocks,
        "ffn_dim": space.decoder_ffn_dims,
        "num_heads": space.decoder_self_heads,
        "ffn_op": space.ffn_ops,
        "cross_heads": space.decoder_cross_heads,
        "enc_dec_span": space.enc_dec_spans,
    }


def _check_value(path: str, value: Any, allowed: Sequence[Any]) -> None:
    # type as well as value: a str equals its str-enum member but is not one
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise ValueError(f"{path}={_fmt(value)} not in allowed values {_fmt_values(allowed)}")


def check(space: SearchSpace, sub: SubnetConfig) -> None:
    """Raise ``ValueError`` unless every gene of ``sub`` is one of ``space``'s allowed values.

    The message names the field path and the allowed values, e.g.
    ``decoder[2].ffn_dim=5000 not in allowed values (3072, 2048, 1024)``.
    """
    if not isinstance(sub, SubnetConfig):
        raise ValueError(f"sub={sub!r} must be a SubnetConfig")
    for name, allowed in _model_genes(space).items():
        _check_value(name, getattr(sub, name), allowed)
    for side in _SIDES:
        layers = getattr(sub, side)
        _check_value(f"len({side})", len(layers), _depths(space, side))
        genes = _layer_genes(space, side)
        for i, layer in enumerate(layers):
            for f in dataclasses.fields(LayerConfig):
                value = getattr(layer, f.name)
                if f.name in genes:
                    _check_value(f"{side}[{i}].{f.name}", value, genes[f.name])
                elif value is not None:
                    raise ValueError(f"{side}[{i}].{f.name}={_fmt(value)} must be None in the {side}")


def _layer(space: SearchSpace, side: str, gene: Callable[[str, Tuple[Any, ...]], Any]) -> LayerConfig:
    """A layer of ``side`` whose field ``name`` is ``gene(name, allowed values)``."""
    return LayerConfig(**{name: gene(name, allowed) for name, allowed in _layer_genes(space, side).items()})


def _sample_layer(space: SearchSpace, side: str, rng: random.Random) -> LayerConfig:
    return _layer(space, side, lambda _, allowed: rng.choice(allowed))


def sample(space: SearchSpace, rng: random.Random) -> SubnetConfig:
    """A subnet with every gene drawn uniformly from its allowed values (per side: depth, then each layer)."""
    dims = {name: rng.choice(allowed) for name, allowed in _model_genes(space).items()}
    layers = {
        side: tuple(_sample_layer(space, side, rng) for _ in range(rng.choice(_depths(space, side))))
        for side in _SIDES
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
    _check_value("block", chosen["encoder"]["block"], space.encoder_blocks)
    _check_value(decoder_arg, chosen["decoder"]["block"], space.decoder_blocks)
    for side in _SIDES:
        chosen[side]["ffn_op"] = _preferred(space.ffn_ops, OpKind.MULT) if ffn_op is None else ffn_op
    _check_value("ffn_op", chosen["encoder"]["ffn_op"], space.ffn_ops)

    def gene(side: str, name: str, allowed: Tuple[Any, ...]) -> Any:
        return chosen[side][name] if name in chosen[side] else pick(allowed)

    dims = {name: pick(allowed) for name, allowed in _model_genes(space).items()}
    layers = {
        side: (_layer(space, side, functools.partial(gene, side)),) * pick(_depths(space, side)) for side in _SIDES
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


NAMED_SUBNETS: Dict[str, Callable[[SearchSpace], SubnetConfig]] = {"largest": largest, "smallest": smallest}
"""Subnets a spec may name instead of giving a file or JSON."""

_SPEC_SHOWN = 60


def _shown(spec: str) -> str:
    """``spec`` as quoted in a message: inline JSON can be long, so it is cut after 60 characters."""
    return repr(spec[:_SPEC_SHOWN] + "..." if spec.startswith("{") and len(spec) > _SPEC_SHOWN else spec)


def parse_subnet_spec(spec: str, option: str = "--subnet") -> Optional[SubnetConfig]:
    """Read a subnet spec without a space: ``None`` for a name in :data:`NAMED_SUBNETS`, else the subnet.

    A spec is ``largest``, ``smallest``, inline JSON (starting with ``{``) or a ``.json``/``.yaml``/``.yml``
    file. This checks everything that needs no space (before a checkpoint or the data loads);
    :func:`resolve_subnet` finishes the job.

    Raises:
        InputError: one line naming ``option`` and the spec: unknown name, missing or unreadable file, bad
            suffix, or contents that are not a SubnetConfig (naming the field).
    """
    spec = spec.strip()
    if spec in NAMED_SUBNETS:
        return None
    try:
        if spec.startswith("{"):
            try:
                data = json.loads(spec)
            except json.JSONDecodeError as err:
                raise ValueError(f"invalid inline JSON: {err}") from None
            return SubnetConfig.from_dict(data)
        path = Path(spec)
        if path.suffix.lower() not in (".json", ".yaml", ".yml"):
            raise ValueError(f"not {', '.join(map(repr, NAMED_SUBNETS))}, inline JSON or a .json/.yaml/.yml file")
        if not path.is_file():
            raise ValueError("no such file (allowed: largest, smallest, inline JSON or a .json/.yaml/.yml file)")
        try:
            return SubnetConfig.load(path)
        except json.JSONDecodeError as err:
            raise ValueError(f"invalid JSON: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"unreadable: {err}") from None
    except ValueError as err:
        raise InputError(f"{option} {_shown(spec)}: {err}") from None


def resolve_subnet(spec: str, space: SearchSpace, option: str = "--subnet") -> SubnetConfig:
    """The subnet of ``space`` that ``spec`` names (see :func:`parse_subnet_spec`), checked with :func:`check`.

    The one resolver of subnet specs: training, export, search, cost and the demo report all call it.

    Raises:
        InputError: as :func:`parse_subnet_spec`, or the subnet is not in ``space`` (naming the field and
            the allowed values).
    """
    sub = parse_subnet_spec(spec, option)
    if sub is None:
        return NAMED_SUBNETS[spec.strip()](space)
    try:
        check(space, sub)
    except ValueError as err:
        raise InputError(f"{option} {_shown(spec.strip())}: not in space {space.name!r}: {err}") from None
    return sub


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

    dims = {name: gene(allowed, getattr(sub, name)) for name, allowed in _model_genes(space).items()}
    layers = {}
    for side in _SIDES:
        old = getattr(sub, side)
        depth = gene(_depths(space, side), len(old))
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

    dims = {name: gene(getattr(a, name), getattr(b, name)) for name in _model_genes(space)}
    layers = {}
    for side in _SIDES:
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


def encode(space: SearchSpace, sub: SubnetConfig) -> List[float]:
    """Features of ``sub`` for a latency predictor (HAT's), each in [0, 1]; the length depends on the space only.

    In order: the two embed dims and the two depths over their maxima; per side the mean FFN dim and mean
    head counts over their maxima; for the decoder the mean and max number of attended encoder layers over
    the space's maximum; then per side, layer by layer up to the maximum depth, a one-hot of the block type
    and a one-hot of the FFN operator (all zeros past the subnet's depth).
    """
    check(space, sub)
    features = [getattr(sub, name) / max(allowed) for name, allowed in _model_genes(space).items()]
    features += [len(getattr(sub, side)) / max(_depths(space, side)) for side in _SIDES]
    for side in _SIDES:
        layers = getattr(sub, side)
        for name, allowed in _layer_genes(space, side).items():
            if name == "enc_dec_span":
                attended = [attended_encoder_layers(layer.enc_dec_span) for layer in layers]
                deepest = max(attended_encoder_layers(s) for s in allowed)
                features += [sum(attended) / len(attended) / deepest, max(attended) / deepest]
            elif not isinstance(allowed[0], Enum):
                features.append(sum(getattr(layer, name) for layer in layers) / len(layers) / max(allowed))
    for side in _SIDES:
        layers = getattr(sub, side)
        genes = _layer_genes(space, side)
        categorical = {name: allowed for name, allowed in genes.items() if isinstance(allowed[0], Enum)}
        for i in range(max(_depths(space, side))):
            for name, allowed in categorical.items():
                features += [float(i < len(layers) and getattr(layers[i], name) == a) for a in allowed]
    return features
