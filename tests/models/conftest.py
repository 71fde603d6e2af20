"""Shared fixtures of the model tests: a small joined dictionary, token batches, subnets, built models."""
from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace
from typing import List, Optional, Tuple

import pytest
import torch
from fairseq.data import Dictionary, data_utils

from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig, extract_subnet_state
from fairseq_shiftadd.models.supernet import ShiftAddSupernet, SupernetConfig
from fairseq_shiftadd.space import LayerConfig, SearchSpace, SubnetConfig, get_space

TINY = get_space("tiny")
# tiny with three encoder layers, so that decoder layers may attend to the last three (enc_dec_span = 2)
SPANS = dataclasses.replace(
    TINY, name="tiny_spans", encoder_layers=(3,), enc_dec_spans=(-1, 1, 2), kernel_sizes=(3, 5, 7)
)
WORDS = 40


@pytest.fixture(scope="session")
def task() -> SimpleNamespace:
    """A translation-task stand-in with one joined dictionary of 40 words (+ 4 specials)."""
    dictionary = Dictionary()
    for i in range(WORDS):
        dictionary.add_symbol(f"w{i}")
    return SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)


def token_batch(task: SimpleNamespace, seed: int, bsz: int = 4) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded sources and right-padded targets of different lengths, as fairseq collates them.

    Returns ``src_tokens (B, S)``, ``src_lengths (B,)``, ``prev_output_tokens (B, T)`` (EOS first).
    """
    d = task.source_dictionary
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 10, (bsz,), generator=g)
    lengths[0] = 10
    sentences = [torch.cat([torch.randint(d.nspecial, len(d), (int(n),), generator=g), torch.tensor([d.eos()])])
                 for n in lengths]
    targets = [torch.cat([torch.randint(d.nspecial, len(d), (int(n),), generator=g), torch.tensor([d.eos()])])
               for n in torch.randint(2, 8, (bsz,), generator=g)]
    src = data_utils.collate_tokens(sentences, d.pad(), d.eos(), left_pad=True)
    prev = data_utils.collate_tokens(targets, d.pad(), d.eos(), left_pad=False, move_eos_to_beginning=True)
    return src, lengths + 1, prev


def covering_subnets(space: SearchSpace, count: int, seed: int = 0) -> List[SubnetConfig]:
    """Subnets of two-layer sides that together use every encoder block, decoder block and FFN op.

    Layer ``k`` of subnet ``j`` gets block ``blocks[(2j + k) % n]`` and FFN op ``ops[(4j + 2k + side) % 3]``;
    every other gene is drawn from ``random.Random(seed)``.
    """
    rng = random.Random(seed)
    subs = []
    for j in range(count):
        sides = {}
        for side, blocks, ffn_dims, heads in (
            ("encoder", space.encoder_blocks, space.encoder_ffn_dims, space.encoder_heads),
            ("decoder", space.decoder_blocks, space.decoder_ffn_dims, space.decoder_self_heads),
        ):
            depth = max(space.encoder_layers) if side == "encoder" else 2
            layers = []
            for k in range(depth):
                decoder_genes = {}
                if side == "decoder":
                    decoder_genes = dict(
                        cross_heads=rng.choice(space.decoder_cross_heads),
                        enc_dec_span=space.enc_dec_spans[(2 * j + k) % len(space.enc_dec_spans)],
                    )
                layers.append(LayerConfig(
                    block=blocks[(2 * j + k) % len(blocks)],
                    ffn_dim=rng.choice(ffn_dims),
                    num_heads=rng.choice(heads),
                    ffn_op=space.ffn_ops[(4 * j + 2 * k + (side == "decoder")) % len(space.ffn_ops)],
                    **decoder_genes,
                ))
            sides[side] = tuple(layers)
        subs.append(SubnetConfig(
            encoder_embed_dim=rng.choice(space.encoder_embed_dims),
            decoder_embed_dim=rng.choice(space.decoder_embed_dims),
            **sides,
        ))
    return subs


@torch.no_grad()
def perturb_(model: torch.nn.Module, seed: int) -> None:
    """Move every parameter off its initial value (LayerNorms, biases, remaps are no longer trivial)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        scale = 0.5 if name.endswith("log_scale") else 0.1
        p.add_(torch.randn(p.shape, generator=g) * scale)


def build_supernet(task: SimpleNamespace, space: SearchSpace, sharing: str, seed: int = 0, **kw) -> ShiftAddSupernet:
    """A perturbed supernet over ``space`` in eval mode."""
    torch.manual_seed(seed)
    model = ShiftAddSupernet.from_space(SupernetConfig(space=space.name, sharing=sharing, **kw), task, space)
    perturb_(model, seed)
    return model.eval()


def build_standalone(
    task: SimpleNamespace, space: SearchSpace, sub: SubnetConfig, supernet: Optional[ShiftAddSupernet] = None
) -> ShiftAddTransformer:
    """The standalone ``sub`` in eval mode, with the weights ``supernet`` computes it with (if given)."""
    model = ShiftAddTransformer.from_subnet(SubnetModelConfig(space=space.name), task, space, sub)
    if supernet is not None:
        model.load_state_dict(extract_subnet_state(supernet, sub))
    return model.eval()


@pytest.fixture(scope="session")
def builders() -> SimpleNamespace:
    """The helpers above, for the test modules."""
    return SimpleNamespace(
        token_batch=token_batch, covering_subnets=covering_subnets, supernet=build_supernet,
        standalone=build_standalone, perturb_=perturb_, tiny=TINY, spans=SPANS,
    )

