"""Parameter counts: the standalone's equals a hand count; the supernet's differ by sharing mode as the table says."""
from __future__ import annotations

from fairseq_shiftadd.ops.kinds import BlockType, OpKind
from fairseq_shiftadd.space import LayerConfig, SubnetConfig

B = BlockType


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def lin(out_dim: int, in_dim: int) -> int:
    return out_dim * in_dim + out_dim


def attention(width: int, qkv: int, key_width: int = 0) -> int:
    key_width = key_width or width
    return lin(qkv, width) + 2 * lin(qkv, key_width) + lin(width, qkv)


def lightweight(width: int, heads: int, kernel: int, shift: bool) -> int:
    return 2 * lin(width, width) + heads * kernel + (lin(width, width) if shift else 0)


def ffn(dim: int, ffn_dim: int, op: OpKind) -> int:
    return lin(ffn_dim, dim) + lin(dim, ffn_dim) + (2 * ffn_dim + 2 * dim if op is OpKind.ADD else 0)


def test_standalone_count_by_hand(builders, task):
    sub = SubnetConfig(
        encoder_embed_dim=64,
        decoder_embed_dim=128,
        encoder=(
            LayerConfig(B.ATTENTION_LIGHTWEIGHT_SHIFTADD, 256, 2, OpKind.ADD),
            LayerConfig(B.LIGHTWEIGHT_CONV, 512, 4, OpKind.MULT),
        ),
        decoder=(LayerConfig(B.ATTENTION, 256, 4, OpKind.SHIFT, cross_heads=2, enc_dec_span=1),),
    )
    space = builders.tiny  # qkv_dim 128, kernel sizes (3, 7); original block details: two-branch Q/K/V 128, rows 16 / 4
    expected = (
        len(task.source_dictionary) * 128  # one shared embedding, max(64, 128) wide
        + attention(32, 128) + lightweight(32, 4, 3, True) + ffn(64, 256, OpKind.ADD) + 2 * 2 * 64
        + lightweight(64, 16, 7, False) + ffn(64, 512, OpKind.MULT) + 2 * 2 * 64
        + attention(128, 128) + attention(128, 128, key_width=64) + ffn(128, 256, OpKind.SHIFT) + 3 * 2 * 128
    )
    assert count(builders.standalone(task, space, sub)) == expected


def test_supernet_counts_by_sharing_mode(builders, task):
    """none - shared = the duplicated candidates; heterogeneous - shared = the remaps' bins."""
    space = builders.tiny
    counts = {mode: count(builders.supernet(task, space, mode)) for mode in ("none", "shared", "heterogeneous")}
    D, F, Q = 128, 512, space.qkv_dim  # both sides have the same maxima in tiny
    half = lin(D // 2, D // 2)
    common = 2 * (lin(F, D) + lin(D, F)) + 3 * attention(D // 2, Q)  # FFN ops; two-branch attentions (Q/K/V Q)
    # encoder: 6 lightweight owners (3 at D, 3 at D/2), 2 shift owners (D, D/2), 6 kernels; shared: one at D
    encoder = common + 2 * 2 * lin(D, D) + 3 * 2 * half + half
    # decoder: only the 3 two-branch lightweight owners (all at D/2: shared at D/2), 1 shift owner, 3 kernels
    decoder = common + 2 * 2 * half
    # kernel rows (original block details: 16 standalone, 4 two-branch): every kernel of a layer is allocated at the
    # layer's most rows (encoder 16, decoder 4, which has no standalone blocks); shared: one such kernel
    encoder_rows, decoder_rows = 6 * 16 - 16, 3 * 4 - 4
    kernels = sum((encoder_rows + decoder_rows) * k for k in space.kernel_sizes)
    assert counts["none"] - counts["shared"] == 2 * encoder + 2 * decoder + kernels
    remaps = 2 * (4 + 1 + 1) * 2  # per layer: fc1, fc2 (shift, add), shift linear (shift), kernel (add)
    assert counts["heterogeneous"] - counts["shared"] == remaps * 100
    assert counts["none"] > counts["heterogeneous"] > counts["shared"]
