"""A standalone ShiftAddNAS subnet (arXiv 2205.08119) and the export of its weights from a supernet.

:class:`ShiftAddTransformer` is built from ONE :class:`~fairseq_shiftadd.space.SubnetConfig` with the same
encoder, decoder and layer classes as the supernet, each layer allocated for its single candidate at the
subnet's exact sizes (``sharing = none``), so its parameter count is the subnet's true one. The subnet is
stored inline as JSON in the model config, so checkpoints are self-contained.

Dropout. A subnet retrains with the dropout it had in the supernet, ``p * d / d_ref`` with ``d_ref`` the
supernet's (the space's) largest embed width of the side, as the original retrained subnets inside the
1024-wide supernet: a 512-wide ``wmt14_en_de`` subnet with ``--dropout 0.3`` trains at 0.15. The widths used
(``encoder_dropout_width``, ``decoder_dropout_width``; 0 = the space's largest) are resolved when the model is
built and stored in the model config, so a checkpoint keeps them. Checkpoints from before these fields load
with 0, i.e. the space's largest width: they evaluate identically (dropout is off in eval) but a resumed
training uses the supernet's rate, not the full rate they were trained at (pass the subnet's own widths to keep
it).

:func:`extract_subnet_state` turns a supernet and a subnet into the standalone model's state dict, holding
the weights exactly as the supernet computes with them (front-sliced; ``T_add(w)`` and ``q(T_shift(w))`` in
heterogeneous mode): after ``load_state_dict`` the standalone model computes what the supernet computes after
``set_subnet`` (eval mode), which is how inherited weights are exported for retraining or evaluation.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import torch
from fairseq.models import FairseqEncoderDecoderModel
from omegaconf import OmegaConf
from torch import Tensor

from ..ops.hetero import SharingMode
from ..cli_errors import InputError
from ..space import SearchSpace, SubnetConfig, check, resolve_subnet
from .states import merge_states
from .layers import LayerCandidates
from .supernet import (
    ModelConfig,
    ShiftAddDecoder,
    ShiftAddEncoder,
    ShiftAddSupernet,
    build_encoder_decoder,
    model_space,
)

__all__ = ["SubnetModelConfig", "ShiftAddTransformer", "dropout_widths", "extract_subnet_state"]


@dataclass
class SubnetModelConfig(ModelConfig):
    """Configuration of :class:`ShiftAddTransformer`."""

    subnet: str = field(
        default="",
        metadata={
            "help": "the subnet: 'largest', 'smallest' (of --space), a .json/.yaml file or inline JSON; "
            "saved inline as JSON in checkpoints"
        },
    )
    encoder_dropout_width: int = field(
        default=0,
        metadata={"help": "encoder dropout is p * d / this width (0: the space's largest encoder embed dim, the "
                          "rate the subnet had in the supernet; the subnet's own width: the full rate p)"},
    )
    decoder_dropout_width: int = field(
        default=0,
        metadata={"help": "decoder dropout is p * d / this width (0: the space's largest decoder embed dim)"},
    )


class ShiftAddTransformer(FairseqEncoderDecoderModel):
    """A fixed ShiftAddNAS subnet as a plain fairseq encoder-decoder (no weight sharing, no elastic sizes).

    Args:
        encoder, decoder: stacks allocated for exactly ``sub``.
        sub: the subnet.
    """

    def __init__(self, encoder: ShiftAddEncoder, decoder: ShiftAddDecoder, sub: SubnetConfig) -> None:
        super().__init__(encoder, decoder)
        self._subnet = self.encoder.subnet = self.decoder.subnet = sub

    @classmethod
    def build_model(cls, cfg: SubnetModelConfig, task: Any) -> "ShiftAddTransformer":
        """Build from ``cfg.subnet`` (checked against ``cfg.space``), which is rewritten as inline JSON.

        Raises:
            InputError: ``subnet`` is empty, unreadable or not in the space (naming the option and the field).
        """
        if not cfg.subnet:
            raise InputError("--subnet is required by shiftadd_transformer: 'largest', 'smallest', a .json/.yaml "
                             "file or inline JSON of a SubnetConfig")
        space = model_space(cfg)
        sub = resolve_subnet(cfg.subnet, space)
        _store(cfg, "subnet", sub.to_json())
        for name, width in zip(("encoder_dropout_width", "decoder_dropout_width"), dropout_widths(cfg, space, sub)):
            _store(cfg, name, width)
        return cls.from_subnet(cfg, task, space, sub)

    @classmethod
    def from_subnet(
        cls, cfg: SubnetModelConfig, task: Any, space: SearchSpace, sub: SubnetConfig
    ) -> "ShiftAddTransformer":
        """The standalone ``sub`` of ``space`` (``cfg.space``, ``cfg.subnet`` and the block details are not read).

        Raises:
            ValueError: ``sub`` is not in ``space`` (naming the field), or a dropout width is invalid.
        """
        check(space, sub)
        encoder_layers = [LayerCandidates.of_subnet(space, sub, "encoder", i) for i in range(len(sub.encoder))]
        decoder_layers = [LayerCandidates.of_subnet(space, sub, "decoder", i) for i in range(len(sub.decoder))]
        encoder, decoder = build_encoder_decoder(
            cfg, task, encoder_layers, decoder_layers, SharingMode.NONE, dropout_widths(cfg, space, sub)
        )
        return cls(encoder, decoder, sub)

    @property
    def subnet(self) -> SubnetConfig:
        """The subnet this model is."""
        return self._subnet


def dropout_widths(cfg: SubnetModelConfig, space: SearchSpace, sub: SubnetConfig) -> Tuple[int, int]:
    """The encoder's and the decoder's dropout reference widths ``d_ref`` (dropout ``p * d / d_ref``).

    A configured width of 0 is the space's largest embed dim of that side (the supernet's ``d_ref``).

    Raises:
        ValueError: a configured width is negative or smaller than the subnet's embed dim of that side.
    """
    widths = []
    for side, dim, largest_dim in (
        ("encoder", sub.encoder_embed_dim, space.max_encoder_embed_dim),
        ("decoder", sub.decoder_embed_dim, space.max_decoder_embed_dim),
    ):
        width = getattr(cfg, f"{side}_dropout_width")
        if width != 0 and width < dim:
            raise ValueError(
                f"--{side}-dropout-width={width} must be 0 (the space's largest, {largest_dim}) or >= the "
                f"subnet's {side}_embed_dim={dim}"
            )
        widths.append(width or largest_dim)
    return widths[0], widths[1]


def _store(cfg: Any, name: str, value: Any) -> None:
    """Set ``cfg.<name> = value``, also in the training config's ``model`` node that checkpoints save.

    fairseq builds a model from a merged *copy* of that node (``merge_with_parent``), which keeps a link
    to the node's parent; without following it a path given on the command line would be saved, and the
    checkpoint would depend on that file.
    """
    given = getattr(cfg, name)
    setattr(cfg, name, value)
    parent = cfg._get_parent() if OmegaConf.is_config(cfg) else None
    node = parent.get("model") if parent is not None else None
    if OmegaConf.is_config(node) and node is not cfg and node.get(name) == given:
        setattr(node, name, value)


@torch.no_grad()
def extract_subnet_state(supernet: ShiftAddSupernet, sub: SubnetConfig) -> Dict[str, Tensor]:
    """The state dict of ``ShiftAddTransformer(sub)`` holding the weights ``supernet`` computes ``sub`` with.

    The standalone model must share embeddings iff the supernet does. Tensors are detached copies.

    Raises:
        ValueError: ``sub`` is not in the supernet's space (the message names the field).
    """
    check(supernet.space, sub)
    encoder, decoder = supernet.encoder, supernet.decoder
    enc_dim, dec_dim = sub.encoder_embed_dim, sub.decoder_embed_dim
    enc_embed, dec_embed = encoder.embedding.embed_tokens.weight, decoder.embedding.embed_tokens.weight
    if enc_embed is dec_embed:
        enc_dim_stored = dec_dim_stored = max(enc_dim, dec_dim)
    else:
        enc_dim_stored, dec_dim_stored = enc_dim, dec_dim
    states = {
        "encoder.embedding.embed_tokens": {"weight": enc_embed[:, :enc_dim_stored]},
        "decoder.embedding.embed_tokens": {"weight": dec_embed[:, :dec_dim_stored]},
    }
    states.update({f"encoder.layers.{i}": encoder.layers[i].export(cfg, enc_dim) for i, cfg in enumerate(sub.encoder)})
    states.update(
        {f"decoder.layers.{i}": decoder.layers[i].export(cfg, dec_dim, enc_dim) for i, cfg in enumerate(sub.decoder)}
    )
    return {name: tensor.detach().clone() for name, tensor in merge_states(states).items()}
