"""Named architectures of the supernet (registered in :mod:`fairseq_shiftadd.registry`).

Each fills only the fields absent from the command line, then chains to :func:`supernet_base`; every other
field keeps its :class:`~fairseq_shiftadd.models.supernet.SupernetConfig` default. fairseq builds a named arch's
model from the stored configuration without the dataclass's defaults, so :func:`supernet_base` also gives a
field that a checkpoint predates (written before the field existed) its default: old checkpoints load and compute
as before (every added field defaults to the earlier behaviour).
"""
from __future__ import annotations

import dataclasses
from argparse import Namespace

__all__ = [
    "supernet_base",
    "supernet_wmt14_en_de",
    "supernet_wmt14_en_fr",
    "supernet_hat_wmt14",
    "supernet_iwslt14_de_en",
    "supernet_demo",
    "supernet_tiny",
]


def supernet_base(args: Namespace) -> None:
    """The paper's recipe: all embeddings shared, dropout 0.3, attention dropout 0.1; absent fields: defaults."""
    args.share_all_embeddings = getattr(args, "share_all_embeddings", True)
    args.dropout = getattr(args, "dropout", 0.3)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    from .supernet import SupernetConfig  # the model's module imports fairseq; this one stays import-light

    for field in dataclasses.fields(SupernetConfig):
        if not hasattr(args, field.name) and field.default is not dataclasses.MISSING:
            setattr(args, field.name, field.default)


def supernet_wmt14_en_de(args: Namespace) -> None:
    """WMT14 En-De space (method section 2): embed 1024, FFN 4096, 6 + 6 layers, 16 heads, Q/K/V 512."""
    args.space = getattr(args, "space", "wmt14_en_de")
    supernet_base(args)


def supernet_wmt14_en_fr(args: Namespace) -> None:
    """WMT14 En-Fr space: as En-De with decoder FFN widths up to 3072."""
    args.space = getattr(args, "space", "wmt14_en_fr")
    supernet_base(args)


def supernet_hat_wmt14(args: Namespace) -> None:
    """HAT's WMT space (attention only, multiplicative FFNs), for comparison."""
    args.space = getattr(args, "space", "hat_wmt14")
    supernet_base(args)


def supernet_iwslt14_de_en(args: Namespace) -> None:
    """IWSLT14 De-En space: HAT's widths (embed 640/512, FFN <= 2048, 4/2 heads), every block type and FFN op."""
    args.space = getattr(args, "space", "iwslt14_de_en")
    supernet_base(args)


def supernet_demo(args: Namespace) -> None:
    """The ``demo`` space (every operator; embed 128/64, FFN 512/256, 1-2 + 1-2 layers) of the CPU demo.

    Dropout 0.1 and no attention or kernel dropout: the demo trains for minutes, far from overfitting.
    """
    args.space = getattr(args, "space", "demo")
    args.dropout = getattr(args, "dropout", 0.1)
    args.attention_dropout = getattr(args, "attention_dropout", 0.0)
    args.weight_dropout = getattr(args, "weight_dropout", 0.0)
    supernet_base(args)


def supernet_tiny(args: Namespace) -> None:
    """The ``tiny`` space (every block type and FFN op, embed <= 128) for CPU tests and demos; dropout 0.1."""
    args.space = getattr(args, "space", "tiny")
    args.dropout = getattr(args, "dropout", 0.1)
    supernet_base(args)
