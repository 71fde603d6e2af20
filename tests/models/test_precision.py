"""Low-precision evaluation of standalone subnets against float64: adder FFNs and mixers as close as mult.

An ``iwslt14_de_en`` subnet (6 + 6 layers, width 640, FFN 2048) with add FFNs once differed from its own
float64 evaluation by 0.18 nats of KL per token in float32 and 1.1 in bfloat16 (mult FFNs: 2e-13, 6e-5):
AdderNet's row offset (centred away now) and the ill-conditioning of Xavier-scale add weights against
LayerNorm-ed inputs (``add_weight_scale``). Each variant runs in float64, float32, bfloat16 and float16, on the
CPU and, where CUDA is available, on the GPU (the Triton adder kernels; float64 stays on the reference path).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from fairseq.data import Dictionary

from fairseq_shiftadd.models.subnet import ShiftAddTransformer, SubnetModelConfig
from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import get_space, largest

SPACE = get_space("iwslt14_de_en")
VARIANTS = {  # encoder block, decoder block, FFN op
    "mult_ffn": (BlockType.ATTENTION, BlockType.ATTENTION, OpKind.MULT),
    "add_ffn": (BlockType.ATTENTION, BlockType.ATTENTION, OpKind.ADD),
    "add_mixer": (BlockType.LIGHTWEIGHT_ADD, BlockType.ATTENTION_LIGHTWEIGHT_ADD, OpKind.MULT),
}
# (max |log p - log p_64| over the vocabulary and positions, mean KL(p_64 || p) per position); the mult
# FFN measures 3e-6 / 2e-13 (float32), 0.043 / 6e-5 (bfloat16), 0.026 / 2e-5 (float16)
TOLERANCES = {torch.float32: (1e-4, 1e-10), torch.bfloat16: (0.15, 3e-4), torch.float16: (0.1, 1e-4)}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def big_task() -> SimpleNamespace:
    dictionary = Dictionary()
    for i in range(1000):
        dictionary.add_symbol(f"w{i}")
    return SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)


def _log_probs(model: ShiftAddTransformer, batch, dtype: torch.dtype) -> torch.Tensor:
    src, lengths, prev = batch
    with torch.no_grad():
        logits, _ = model.to(dtype)(src, lengths, prev)
    return F.log_softmax(logits.double(), dim=-1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_low_precision_matches_float64(builders, big_task, variant, device):
    encoder_block, decoder_block, ffn_op = VARIANTS[variant]
    sub = largest(SPACE, block=encoder_block, decoder_block=decoder_block, ffn_op=ffn_op)
    torch.manual_seed(0)
    model = ShiftAddTransformer.from_subnet(SubnetModelConfig(space=SPACE.name), big_task, SPACE, sub).eval()
    model = model.to(device)
    batch = tuple(t.to(device) for t in builders.token_batch(big_task, seed=0))
    reference = _log_probs(model, batch, torch.float64)
    for dtype, (max_error, max_kl) in TOLERANCES.items():
        log_probs = _log_probs(model, batch, dtype)
        error = (log_probs - reference).abs().max().item()
        kl = (reference.exp() * (reference - log_probs)).sum(-1).mean().item()
        assert error < max_error and kl < max_kl, \
            f"{variant} in {dtype} on {device}: max error {error:.3g}, KL {kl:.3g}"
