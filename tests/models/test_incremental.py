"""Incremental (step-by-step) decoding equals the full forward, for every decoder block type and span."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.ops.lightconv import BUFFER_BATCH_DIM
from fairseq_shiftadd.space import LayerConfig, SubnetConfig, attended_encoder_layers

DECODER_BLOCKS = [b for b in BlockType if b.has_attention]
TOL = dict(rtol=1e-5, atol=1e-4)


def _subnet(space, block: BlockType, span: int) -> SubnetConfig:
    """Two decoder layers of ``block`` attending with ``span``; a lightweight_shiftadd + two-branch encoder."""
    encoder = tuple(
        LayerConfig(b, 256, 2, OpKind.ADD)
        for b in (BlockType.LIGHTWEIGHT_SHIFTADD, BlockType.ATTENTION_LIGHTWEIGHT_ADD, BlockType.ATTENTION)
    )
    decoder = (
        LayerConfig(block, 512, 4, OpKind.SHIFT, cross_heads=2, enc_dec_span=span),
        LayerConfig(block, 256, 2, OpKind.MULT, cross_heads=4, enc_dec_span=span),
    )
    return SubnetConfig(encoder_embed_dim=64, decoder_embed_dim=128, encoder=encoder, decoder=decoder)


def _models(builders, task, sub):
    supernet = builders.supernet(task, builders.spans, "heterogeneous", seed=5)
    supernet.set_subnet(sub)
    return {"supernet": supernet, "standalone": builders.standalone(task, builders.spans, sub, supernet)}


def _stepwise(model, encoder_out, prev, state, start=0):
    """Logits of positions ``start..T-1`` fed one token at a time into ``state``."""
    return torch.cat(
        [model.decoder(prev[:, : t + 1], encoder_out, incremental_state=state)[0] for t in range(start, prev.size(1))],
        dim=1,
    )


@pytest.mark.parametrize("span", [-1, 1, 2])
@pytest.mark.parametrize("block", DECODER_BLOCKS, ids=lambda b: b.value)
def test_incremental_equals_full(builders, task, block, span):
    sub = _subnet(builders.spans, block, span)
    src, lengths, prev = builders.token_batch(task, seed=7)
    prev = prev.masked_fill(prev.eq(task.target_dictionary.pad()), task.target_dictionary.eos())  # no pads
    for name, model in _models(builders, task, sub).items():
        with torch.no_grad():
            encoder_out = model.encoder(src, lengths)
            full = model.decoder(prev, encoder_out)[0]
            assert_close(_stepwise(model, encoder_out, prev, {}), full, **TOL, msg=name)


def test_incremental_with_packed_shift_linears_equals_full(builders, task, monkeypatch):
    """The shift FFN and the shift-add mixer's shift linear read packed codes at each step (small weights taken too)."""
    from fairseq_shiftadd.ops.kernels import cpu_shift

    monkeypatch.setattr(cpu_shift, "PACKED_MIN_WEIGHTS", 1)
    calls = []
    monkeypatch.setattr(cpu_shift, "pow2_linear", lambda *args, run=cpu_shift.pow2_linear: calls.append(1) or
                        run(*args))
    sub = _subnet(builders.spans, BlockType.ATTENTION_LIGHTWEIGHT_SHIFTADD, -1)
    src, lengths, prev = builders.token_batch(task, seed=7)
    prev = prev.masked_fill(prev.eq(task.target_dictionary.pad()), task.target_dictionary.eos())
    for name, model in _models(builders, task, sub).items():
        with torch.no_grad():
            encoder_out = model.encoder(src, lengths)
            full = model.decoder(prev, encoder_out)[0]
            calls.clear()
            assert_close(_stepwise(model, encoder_out, prev, {}), full, **TOL, msg=name)
        if cpu_shift.packed_supported(torch.zeros(1, 1), None, 1):  # the kernels built here
            assert len(calls) >= 3 * prev.size(1), (name, len(calls))  # fc1, fc2, the mixer's shift linear per step


@pytest.mark.parametrize("block", DECODER_BLOCKS, ids=lambda b: b.value)
def test_reordered_state_equals_permuted_batch(builders, task, block):
    """Beam-search reordering (with repeats) then more steps == decoding the reordered batch from scratch."""
    sub = _subnet(builders.spans, block, 2)
    src, lengths, prev = builders.token_batch(task, seed=8)
    prev = prev.masked_fill(prev.eq(task.target_dictionary.pad()), task.target_dictionary.eos())
    new_order = torch.tensor([2, 0, 0, 3])
    split = 3
    for name, model in _models(builders, task, sub).items():
        with torch.no_grad():
            encoder_out = model.encoder(src, lengths)
            state: dict = {}
            _stepwise(model, encoder_out, prev[:, :split], state)
            model.decoder.reorder_incremental_state_scripting(state, new_order)
            encoder_out = model.encoder.reorder_encoder_out(encoder_out, new_order)
            resumed = _stepwise(model, encoder_out, prev[new_order], state, start=split)
            expected = model.decoder(prev[new_order], model.encoder(src[new_order], lengths[new_order]))[0]
            assert_close(resumed, expected[:, split:], **TOL, msg=name)


def test_state_is_per_module_and_subnet_sized(builders, task):
    """Each attention / lightweight module keeps its own cache, sized by the running subnet (not the supernet's
    largest): after ``t`` steps it holds, per decoder layer ``i``, the self-attention keys and values of ``t``
    tokens (``2 B t qkv``, the block's attention width), the lightweight window of the ``k_i - 1`` last inputs
    (``B c (k_i - 1)``, the block's mixer width) and the cross-attention keys and values of the attended encoder
    layers (``2 B n S qkv``). Counted in elements, whatever the layout; every cached tensor holds the batch on the
    dimension beam search reorders: the first, the lightweight window's ``BUFFER_BATCH_DIM`` (time-major)."""
    space = builders.spans
    src, lengths, prev = builders.token_batch(task, seed=9)
    B, S = src.shape
    for dim, steps in ((128, 1), (64, 3)):  # the widest decoder, then a narrower one
        sub = dataclasses.replace(_subnet(space, BlockType.ATTENTION_LIGHTWEIGHT_SHIFTADD, 2), decoder_embed_dim=dim)
        supernet = _models(builders, task, sub)["supernet"]
        state: dict = {}
        with torch.no_grad():
            _stepwise(supernet, supernet.encoder(src, lengths), prev[:, :steps], state)
        cached = [t for buffer in state.values() for t in buffer.values()]
        windows = [t for buffer in state.values() for name, t in buffer.items() if name == "window"]
        assert windows and all(t.size(BUFFER_BATCH_DIM) == B for t in windows)
        assert all(t.size(0) == B for buffer in state.values() for name, t in buffer.items() if name != "window")
        expected = sum(
            2 * B * steps * space.attention_qkv_dim(layer.block)
            + B * layer.block.branch_width(sub.decoder_embed_dim) * (space.kernel_sizes[i] - 1)
            + 2 * B * attended_encoder_layers(layer.enc_dec_span) * S * space.qkv_dim
            for i, layer in enumerate(sub.decoder)
        )
        assert sum(t.numel() for t in cached) == expected, (dim, steps)
