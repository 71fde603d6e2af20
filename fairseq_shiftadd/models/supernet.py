"""The ShiftAddNAS translation supernet (arXiv 2205.08119) and the encoder/decoder it shares with subnets.

:class:`ShiftAddEncoder` and :class:`ShiftAddDecoder` stack :mod:`.layers` over shared token embeddings
(scaled by ``sqrt(d)``, front-sliced to the sampled width ``d``), sinusoidal positions computed at ``d``,
dropout ``p * d / d_ref`` (HAT; ``d_ref`` = the space's largest width of the side, in the supernet and, by
default, in a retrained standalone subnet too) and a decoder output projection tied to the decoder embeddings. Layers
beyond the subnet's depth are skipped. Both read the :class:`~fairseq_shiftadd.space.SubnetConfig` that the
model root hands them (the sequence generator calls them separately); nothing below holds ``active_*`` state.

:class:`ShiftAddSupernet` allocates every candidate of a :class:`~fairseq_shiftadd.space.SearchSpace` at
its largest size, with the weight sharing of ``--sharing`` (table in :mod:`.sharing`), and runs the subnet
given to :meth:`ShiftAddSupernet.set_subnet` (the largest one after building, unless ``--subnet`` names one).
"""

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoder, FairseqEncoderDecoderModel, FairseqIncrementalDecoder
from fairseq.modules import SinusoidalPositionalEmbedding
from torch import Tensor, nn

from ..ops.elastic import scale_dropout, slice_linear
from ..ops.hetero import SharingMode
from ..ops.quant import QuantConfig, check_bits
from ..ops.shift import ShiftMode
from ..space import SPACES, BlockDetails, SearchSpace, SubnetConfig, check, largest, resolve_subnet
from .archs import restore_legacy_values
from .incremental import IncrementalState
from .layers import DecoderLayer, EncoderLayer, LayerCandidates
from .space_record import check_state_fits, model_space, record_space

__all__ = [
    "ModelConfig",
    "model_quant",
    "SupernetConfig",
    "SinusoidalPositions",
    "ShiftAddEncoder",
    "ShiftAddDecoder",
    "build_encoder_decoder",
    "SpaceModel",
    "ShiftAddSupernet",
]

EncoderOut = Dict[str, List[Tensor]]


SHIFT_WEIGHTS_CHOICES = ChoiceEnum([m.value for m in ShiftMode])
BLOCK_DETAILS_CHOICES = ChoiceEnum([d.value for d in BlockDetails])


@dataclass
class ModelConfig(FairseqDataclass):
    """Fields shared by the supernet and the standalone subnet."""

    space: str = field(
        default="wmt14_en_de", metadata={"help": f"search space name, one of {', '.join(SPACES)}"}
    )
    dropout: float = field(
        default=0.3, metadata={"help": "dropout probability, scaled by d / d_ref (d_ref: the space's largest width)"}
    )
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention probabilities"})
    activation_dropout: float = field(
        default=0.0, metadata={"help": "dropout after the FFN ReLU, scaled by d / d_ref"}
    )
    weight_dropout: float = field(
        default=0.03, metadata={"help": "DropConnect probability on the lightweight conv / add kernels"}
    )
    share_all_embeddings: bool = field(
        default=True, metadata={"help": "one embedding matrix for source, target and output (needs one dictionary)"}
    )
    max_source_positions: int = field(default=1024, metadata={"help": "max number of source tokens"})
    max_target_positions: int = field(default=1024, metadata={"help": "max number of target tokens"})
    block_details: BLOCK_DETAILS_CHOICES = field(  # type: ignore[valid-type]
        default="original",
        metadata={"help": "block details: original = the released ShiftAddNAS code's (the attention branch of "
                          "attention+X at the full qkv_dim; lightweight kernels with 16 rows, 4 in attention+X) | "
                          "compact = this project's earlier ones (qkv_dim / 2; rows = the layer's heads); the three "
                          "flags below override single details"},
    )
    two_branch_qkv_dim: int = field(
        default=0,
        metadata={"help": "Q/K/V width of the attention branch of attention+X blocks (0: the --block-details "
                          "preset's: the space's qkv_dim, or qkv_dim / 2 under compact)"},
    )
    lightweight_kernel_heads: int = field(
        default=0,
        metadata={"help": "kernel rows of standalone lightweight_* blocks (0: the --block-details preset's: 16, "
                          "or the layer's sampled heads under compact)"},
    )
    two_branch_kernel_heads: int = field(
        default=0,
        metadata={"help": "kernel rows of the lightweight branch of attention+X blocks (0: the --block-details "
                          "preset's: 4, or the layer's sampled heads under compact)"},
    )
    space_definition: str = field(
        default="",
        metadata={"help": "the space's full definition (JSON), recorded when the model is built so checkpoints "
                          "rebuild it whatever the named space says later; set by the model, not by hand"},
    )
    space_hash: str = field(
        default="", metadata={"help": "SHA-256 of space_definition (recorded with it; a mismatch is refused)"}
    )
    shift_weights: SHIFT_WEIGHTS_CHOICES = field(  # type: ignore[valid-type]
        default="q",
        metadata={"help": "shift layers: q = DeepShift-Q (a real weight rounded to a signed power of two; the "
                          "default, shares weights) | ps = DeepShift-PS (trained exponent and ternary sign, as the "
                          "original; needs --sharing none in a supernet)"},
    )
    quant_bits: Optional[int] = field(
        default=None,
        metadata={
            "help": "quantisation-aware training: fake-quantise the weights and inputs of every mult, shift and "
            "add layer to this many bits (8 for the paper's 8-bit models; shift exponents stay 5-bit); "
            "default: float"
        },
    )


def model_quant(cfg: ModelConfig) -> Optional[QuantConfig]:
    """The fake quantisation of ``cfg.quant_bits`` (``None``: float); the one reader of that field for the models.

    Raises:
        ValueError: ``quant_bits`` is not None or an integer in [2, 16].
    """
    bits = getattr(cfg, "quant_bits", None)
    return None if bits is None else QuantConfig(bits=check_bits("quant_bits", bits))


SHARING_CHOICES = ChoiceEnum([m.value for m in SharingMode])


@dataclass
class SupernetConfig(ModelConfig):
    """Configuration of :class:`ShiftAddSupernet`."""

    sharing: SHARING_CHOICES = field(  # type: ignore[valid-type]
        default="heterogeneous",
        metadata={"help": "weight sharing between the candidates of a layer: none | shared | heterogeneous"},
    )
    subnet: Optional[str] = field(
        default=None,
        metadata={
            "help": "train/evaluate only this subnet: 'largest', 'smallest', a .json/.yaml file or inline JSON "
            "(the one owner of --subnet; the shiftadd_translation task reads it from the model); "
            "default: sample subnets (largest active)"
        },
    )


class SinusoidalPositions(nn.Module):
    """Sinusoidal positions (fairseq's tensor2tensor variant) computed at the sampled width ``d``.

    Positions count non-pad tokens from ``padding_idx + 1`` (fairseq's ``make_positions``); in incremental
    decoding the last position is ``padding_idx + t``. Tables are cached per width, device and dtype; they
    are not parameters.

    Shape: tokens ``(B, T)`` -> ``(B, T, d)``.
    """

    def __init__(self, padding_idx: int, max_positions: int) -> None:
        super().__init__()
        self.padding_idx = padding_idx
        self.max_positions = max_positions
        self._tables: Dict[Tuple[int, torch.device, torch.dtype], Tensor] = {}

    def _table(self, dim: int, like: Tensor) -> Tensor:
        key = (dim, like.device, like.dtype)
        if key not in self._tables:
            num = self.max_positions + self.padding_idx + 1
            table = SinusoidalPositionalEmbedding.get_embedding(num, dim, self.padding_idx)
            self._tables[key] = table.to(device=like.device, dtype=like.dtype)
        return self._tables[key]

    def forward(self, tokens: Tensor, dim: int, like: Tensor, incremental: bool = False) -> Tensor:
        table = self._table(dim, like)
        if incremental:
            position = self.padding_idx + tokens.size(1)
            return table[position].expand(tokens.size(0), 1, dim)
        return table[utils.make_positions(tokens, self.padding_idx)]


class _Embedded(nn.Module):
    """Token embedding (front-sliced, ``* sqrt(d)``) plus positions, then dropout: the input of both stacks."""

    def __init__(self, embed_tokens: nn.Embedding, max_positions: int) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.padding_idx = embed_tokens.padding_idx
        self.positions = SinusoidalPositions(self.padding_idx, max_positions)

    def embed(self, tokens: Tensor, dim: int, dropout: float, positions_of: Optional[Tensor] = None) -> Tensor:
        """``dropout(sqrt(d) E[tokens, :d] + P_d)`` as ``(T, B, d)``.

        ``positions_of``: incremental decoding, the whole prefix whose last position ``tokens`` are at.
        """
        weight, _ = slice_linear(self.embed_tokens.weight, None, self.embed_tokens.num_embeddings, dim)
        x = math.sqrt(dim) * F.embedding(tokens, weight, self.padding_idx)
        if positions_of is None:
            x = x + self.positions(tokens, dim, x)
        else:
            x = x + self.positions(positions_of, dim, x, incremental=True)
        return F.dropout(x, p=dropout, training=self.training).transpose(0, 1)


class _Dropouts:
    """The dropout probabilities of one stack, scaled with the width (HAT): ``p * d / reference_dim``."""

    def __init__(self, cfg: ModelConfig, reference_dim: int) -> None:
        self.dropout, self.activation_dropout = cfg.dropout, cfg.activation_dropout
        self.reference_dim = reference_dim

    def at(self, dim: int) -> Tuple[float, float]:
        return tuple(scale_dropout(p, dim, self.reference_dim) for p in (self.dropout, self.activation_dropout))


def _init_stack(
    stack: nn.Module,
    cfg: ModelConfig,
    embed_tokens: nn.Embedding,
    layers: Sequence[LayerCandidates],
    sharing: SharingMode | str,
    layer_cls: type,
    max_positions: int,
    dropout_width: Optional[int],
) -> None:
    """What the encoder and the decoder set up alike: embeddings, dropouts, one layer per candidate set."""
    stack.subnet = None  # set by the model root
    stack.max_dim = max(c.max_embed_dim for c in layers)
    stack.embedding = _Embedded(embed_tokens, max_positions)
    stack.dropouts = _Dropouts(cfg, stack.max_dim if dropout_width is None else dropout_width)
    stack.max_positions_ = max_positions
    quant = model_quant(cfg)
    stack.layers = nn.ModuleList(
        layer_cls(c, sharing, cfg.attention_dropout, cfg.weight_dropout, str(cfg.shift_weights), quant=quant)
        for c in layers
    )


class ShiftAddEncoder(FairseqEncoder):
    """Encoder stack: embeddings, then :class:`EncoderLayer` s as the subnet's ``encoder`` layers say.

    Returns fairseq's encoder-out dict: ``encoder_out`` ``[(S, B, d)]``, ``encoder_padding_mask``
    ``[(B, S)]``, ``encoder_states`` (every run layer's output, for the encoder-decoder spans), ``src_lengths``.

    Args:
        cfg: model configuration (dropouts, positions).
        dictionary: source dictionary.
        embed_tokens: the (possibly shared) embedding, at least ``max_dim`` wide.
        layers: candidates of each layer.
        sharing: weight sharing between candidates.
        dropout_width: ``d_ref`` of the dropout ``p * d / d_ref`` (default: the largest width of ``layers``).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        dictionary: Any,
        embed_tokens: nn.Embedding,
        layers: Sequence[LayerCandidates],
        sharing: SharingMode | str,
        dropout_width: Optional[int] = None,
    ) -> None:
        super().__init__(dictionary)
        _init_stack(self, cfg, embed_tokens, layers, sharing, EncoderLayer, cfg.max_source_positions, dropout_width)

    def forward(self, src_tokens: Tensor, src_lengths: Optional[Tensor] = None, **unused: Any) -> EncoderOut:
        sub = _active(self.subnet)
        dim = sub.encoder_embed_dim
        dropout, activation_dropout = self.dropouts.at(dim)
        padding_mask = src_tokens.eq(self.embedding.padding_idx)
        x = self.embedding.embed(src_tokens, dim, dropout)
        x = x.masked_fill(padding_mask.t().unsqueeze(-1), 0.0)
        states = []
        for layer, cfg in zip(self.layers, sub.encoder):
            x = layer(x, cfg, padding_mask, dropout, activation_dropout)
            states.append(x)
        return {
            "encoder_out": [x],
            "encoder_padding_mask": [padding_mask],
            "encoder_states": states,
            "src_lengths": [] if src_lengths is None else [src_lengths],
        }

    def reorder_encoder_out(self, encoder_out: EncoderOut, new_order: Tensor) -> EncoderOut:
        """Select ``new_order`` along the batch axis (1 for ``(S, B, d)`` tensors, 0 otherwise)."""
        batch_axis = {"encoder_out": 1, "encoder_states": 1, "encoder_padding_mask": 0, "src_lengths": 0}
        return {
            key: [t.index_select(batch_axis[key], new_order) for t in tensors] for key, tensors in encoder_out.items()
        }

    def max_positions(self) -> int:
        return self.max_positions_


class ShiftAddDecoder(FairseqIncrementalDecoder):
    """Decoder stack: embeddings, :class:`DecoderLayer` s up to the subnet's depth, tied output projection.

    ``logits = x E[:, :d]^T`` with ``E`` the decoder's input embedding. Incremental decoding (fairseq's
    ``incremental_state``) runs only the last token; every block type keeps its own cache
    (:mod:`.attention`, :mod:`.lightweight`), reordered by :meth:`reorder_incremental_state_scripting`.

    Args: as :class:`ShiftAddEncoder` (target dictionary).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        dictionary: Any,
        embed_tokens: nn.Embedding,
        layers: Sequence[LayerCandidates],
        sharing: SharingMode | str,
        dropout_width: Optional[int] = None,
    ) -> None:
        super().__init__(dictionary)
        _init_stack(self, cfg, embed_tokens, layers, sharing, DecoderLayer, cfg.max_target_positions, dropout_width)

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: Optional[EncoderOut] = None,
        incremental_state: Optional[IncrementalState] = None,
        features_only: bool = False,
        **unused: Any,
    ) -> Tuple[Tensor, Dict[str, Any]]:
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return (x if features_only else self.output_layer(x)), extra

    def extract_features(
        self,
        prev_output_tokens: Tensor,
        encoder_out: Optional[EncoderOut] = None,
        incremental_state: Optional[IncrementalState] = None,
        **unused: Any,
    ) -> Tuple[Tensor, Dict[str, Any]]:
        """Decoder features ``(B, T, d)`` and ``{"attn": [None], "inner_states": [...]}``."""
        if encoder_out is None:
            raise ValueError("encoder_out is required (the decoder attends to the encoder)")
        sub = _active(self.subnet)
        dim = sub.decoder_embed_dim
        dropout, activation_dropout = self.dropouts.at(dim)
        if incremental_state is None:
            x = self.embedding.embed(prev_output_tokens, dim, dropout)
        else:
            x = self.embedding.embed(prev_output_tokens[:, -1:], dim, dropout, positions_of=prev_output_tokens)
        states, padding_mask = encoder_out["encoder_states"], encoder_out["encoder_padding_mask"]
        padding_mask = padding_mask[0] if padding_mask else None
        inner_states = [x]
        for layer, cfg in zip(self.layers, sub.decoder):
            x = layer(x, cfg, states, padding_mask, dropout, activation_dropout, incremental_state)
            inner_states.append(x)
        return x.transpose(0, 1), {"attn": [None], "inner_states": inner_states}

    def reorder_incremental_state_scripting(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """fairseq's reorder of every module's cache along the batch axis (beam search), over the modules that
        define ``reorder_incremental_state`` (:attr:`_cache_owners`), found once instead of at every step.

        fairseq walks all submodules at every decoding step: for a standalone subnet's 121 modules that walk cost
        more than its whole difference in decoding time to fairseq's ``transformer`` (about 10 ms of 58 ms per
        sentence at beam 5, measured with :func:`~fairseq_shiftadd.latency.time_model`).
        """
        for module in self._cache_owners:
            result = module.reorder_incremental_state(incremental_state, new_order)
            if result is not None:
                incremental_state = result

    @functools.cached_property
    def _cache_owners(self) -> Tuple[nn.Module, ...]:
        """The modules (this one included, as fairseq's walk does) that define ``reorder_incremental_state``.

        The set of modules is fixed once the decoder is built; ``to()``, ``half()`` and loading a state dict keep
        the module objects.
        """
        return tuple(m for m in self.modules() if hasattr(m, "reorder_incremental_state"))

    def output_layer(self, features: Tensor, **unused: Any) -> Tensor:
        """Tied projection to the vocabulary: ``features E[:, :d]^T``."""
        embed = self.embedding.embed_tokens
        return F.linear(features, slice_linear(embed.weight, None, embed.num_embeddings, features.size(-1))[0])

    def max_positions(self) -> int:
        return self.max_positions_


def _active(subnet: Optional[SubnetConfig]) -> SubnetConfig:
    if subnet is None:
        raise RuntimeError("no subnet is set: call set_subnet on the model first")
    return subnet


def _embedding(dictionary: Any, dim: int) -> nn.Embedding:
    """``N(0, dim^-1/2)`` token embedding with a zero padding row (fairseq's transformer)."""
    embed = nn.Embedding(len(dictionary), dim, padding_idx=dictionary.pad())
    nn.init.normal_(embed.weight, mean=0.0, std=dim**-0.5)
    nn.init.constant_(embed.weight[dictionary.pad()], 0.0)
    return embed


def build_encoder_decoder(
    cfg: ModelConfig,
    task: Any,
    encoder_layers: Sequence[LayerCandidates],
    decoder_layers: Sequence[LayerCandidates],
    sharing: SharingMode | str,
    dropout_widths: Tuple[Optional[int], Optional[int]] = (None, None),
) -> Tuple[ShiftAddEncoder, ShiftAddDecoder]:
    """The encoder and decoder over ``task``'s dictionaries (one shared embedding with ``share_all_embeddings``).

    ``dropout_widths``: the encoder's and the decoder's ``d_ref`` (``None``: the stack's largest width).

    Raises:
        ValueError: ``share_all_embeddings`` with different source and target dictionaries.
    """
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    encoder_dim = max(c.max_embed_dim for c in encoder_layers)
    decoder_dim = max(c.max_embed_dim for c in decoder_layers)
    if cfg.share_all_embeddings:
        if src_dict != tgt_dict:
            raise ValueError("share_all_embeddings requires a joined dictionary (source == target)")
        encoder_embed = decoder_embed = _embedding(src_dict, max(encoder_dim, decoder_dim))
    else:
        encoder_embed, decoder_embed = _embedding(src_dict, encoder_dim), _embedding(tgt_dict, decoder_dim)
    encoder = ShiftAddEncoder(cfg, src_dict, encoder_embed, encoder_layers, sharing, dropout_widths[0])
    decoder = ShiftAddDecoder(cfg, tgt_dict, decoder_embed, decoder_layers, sharing, dropout_widths[1])
    return encoder, decoder


class SpaceModel(FairseqEncoderDecoderModel):
    """A fairseq encoder-decoder built over a :class:`SearchSpace` (``self.space``, set by the subclass), whose
    :meth:`load_state_dict` refuses in one line a state dict that does not fit (:func:`check_state_fits`)."""

    space: SearchSpace

    def load_state_dict(self, state_dict: Dict[str, Tensor], strict: bool = True, model_cfg: Any = None,
                        args: Any = None) -> Any:
        """fairseq's load (key upgrades first), after :func:`check_state_fits`."""
        self.upgrade_state_dict(state_dict)
        check_state_fits(self, state_dict, self.space, strict)
        return super().load_state_dict(state_dict, strict, model_cfg, args)


class ShiftAddSupernet(SpaceModel):
    """Weight-sharing supernet over a search space; runs one subnet at a time (:meth:`set_subnet`).

    Args:
        encoder, decoder: stacks allocated for every candidate of ``space``.
        space: the search space.
    """

    def __init__(self, encoder: ShiftAddEncoder, decoder: ShiftAddDecoder, space: SearchSpace) -> None:
        super().__init__(encoder, decoder)
        self.space = space
        self._subnet: Optional[SubnetConfig] = None

    @classmethod
    def build_model(cls, cfg: SupernetConfig, task: Any) -> "ShiftAddSupernet":
        """Build over :func:`~.space_record.model_space` of ``cfg``, whose definition is recorded in ``cfg``."""
        restore_legacy_values(cfg)
        space = model_space(cfg)
        record_space(cfg, space)
        return cls.from_space(cfg, task, space)

    @classmethod
    def from_space(cls, cfg: SupernetConfig, task: Any, space: SearchSpace) -> "ShiftAddSupernet":
        """The supernet over ``space`` (any :class:`SearchSpace`; ``cfg.space`` and the block details are not read)."""
        encoder_layers = [LayerCandidates.of_space(space, "encoder", i) for i in range(space.max_encoder_layers)]
        decoder_layers = [LayerCandidates.of_space(space, "decoder", i) for i in range(space.max_decoder_layers)]
        sharing = SharingMode(str(cfg.sharing))
        if ShiftMode(str(cfg.shift_weights)) is ShiftMode.PS and sharing is not SharingMode.NONE:
            raise ValueError(
                f"--shift-weights ps needs --sharing none (DeepShift-PS keeps its own exponent and sign per "
                f"candidate), got --sharing {sharing.value}"
            )
        encoder, decoder = build_encoder_decoder(cfg, task, encoder_layers, decoder_layers, sharing)
        model = cls(encoder, decoder, space)
        model.set_subnet(resolve_subnet(cfg.subnet, space) if cfg.subnet else largest(space))
        return model

    @property
    def subnet(self) -> SubnetConfig:
        """The active subnet."""
        return _active(self._subnet)

    def set_subnet(self, sub: SubnetConfig) -> None:
        """Activate ``sub`` (for the encoder and the decoder).

        Raises:
            ValueError: ``sub`` is not in the space (the message names the field).
        """
        check(self.space, sub)
        self._subnet = self.encoder.subnet = self.decoder.subnet = sub

    def sharing_regulariser(self) -> Tensor:
        """Sum of the sharing regularisers of the add-FFN weights that the *active* subnet reads.

        Each term is :meth:`~.sharing.WeightSlot.regulariser`, so the sum is non-zero only in heterogeneous mode
        and for a subnet with an add FFN (the terms of :meth:`~.layers.EncoderLayer.sharing_regularisers`; not the
        adder mixers' softmax-normalised kernels). A slot's
        ``T_add`` is thus pulled toward Laplace in the updates that train its add candidate, and only ``T_add``
        (the shared weight is read gradient-stopped): the term costs what the subnet uses (nothing without add
        FFNs), and inactive slots, layers beyond the depth included, get no gradient from it.
        """
        sub = self.subnet
        stacks = ((self.encoder.layers, sub.encoder), (self.decoder.layers, sub.decoder))
        terms = [
            term
            for layers, cfgs in stacks
            for layer, cfg in zip(layers, cfgs)
            for term in layer.sharing_regularisers(cfg)
        ]
        return torch.stack(terms).sum() if terms else self.encoder.embedding.embed_tokens.weight.new_zeros(())
