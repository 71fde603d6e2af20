"""A standalone ShiftAddNAS subnet (arXiv 2205.08119) and the export of its weights from a supernet.

:class:`ShiftAddTransformer` is built from ONE :class:`~fairseq_shiftadd.space.SubnetConfig` with the same
encoder, decoder and layer classes as the supernet, each layer allocated for its single candidate at the
subnet's exact sizes (``sharing = none``), so its parameter count is the subnet's true one. The subnet is
stored inline as JSON in the model config, so checkpoints are self-contained.

:func:`extract_subnet_state` turns a supernet and a subnet into the standalone model's state dict, holding
the weights exactly as the supernet computes with them (front-sliced; ``T_add(w)`` and ``q(T_shift(w))`` in
heterogeneous mode): after ``load_state_dict`` the standalone model computes what the supernet computes after
``set_subnet`` (eval mode), which is how inherited weights are exported for retraining or evaluation.
"""

from dataclasses import dataclass, field
from typing import Any, Dict

import torch
from fairseq.models import FairseqEncoderDecoderModel
from omegaconf import OmegaConf
from torch import Tensor

from ..ops.hetero import SharingMode
from ..cli_errors import InputError
from ..space import SearchSpace, SubnetConfig, check, get_space, resolve_subnet
from .blocks import merge_states
from .layers import LayerCandidates
from .supernet import (
    ModelConfig,
    ShiftAddDecoder,
    ShiftAddEncoder,
    ShiftAddSupernet,
    build_encoder_decoder,
)

__all__ = ["SubnetModelConfig", "ShiftAddTransformer", "extract_subnet_state"]


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
        sub = resolve_subnet(cfg.subnet, get_space(cfg.space))
        _store_inline(cfg, sub.to_json())
        return cls.from_subnet(cfg, task, get_space(cfg.space), sub)

    @classmethod
    def from_subnet(
        cls, cfg: ModelConfig, task: Any, space: SearchSpace, sub: SubnetConfig
    ) -> "ShiftAddTransformer":
        """The standalone ``sub`` of ``space`` (``cfg.space`` and ``cfg.subnet`` are not read).

        Raises:
            ValueError: ``sub`` is not in ``space`` (naming the field).
        """
        check(space, sub)
        encoder_layers = [LayerCandidates.of_subnet(space, sub, "encoder", i) for i in range(len(sub.encoder))]
        decoder_layers = [LayerCandidates.of_subnet(space, sub, "decoder", i) for i in range(len(sub.decoder))]
        encoder, decoder = build_encoder_decoder(cfg, task, encoder_layers, decoder_layers, SharingMode.NONE)
        return cls(encoder, decoder, sub)

    @property
    def subnet(self) -> SubnetConfig:
        """The subnet this model is."""
        return self._subnet


def _store_inline(cfg: Any, text: str) -> None:
    """Set ``cfg.subnet = text``, also in the training config's ``model`` node that checkpoints save.

    fairseq builds a model from a merged *copy* of that node (``merge_with_parent``), which keeps a link
    to the node's parent; without following it a path given on the command line would be saved, and the
    checkpoint would depend on that file.
    """
    given = cfg.subnet
    cfg.subnet = text
    parent = cfg._get_parent() if OmegaConf.is_config(cfg) else None
    node = parent.get("model") if parent is not None else None
    if OmegaConf.is_config(node) and node is not cfg and node.get("subnet") == given:
        node.subnet = text


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
