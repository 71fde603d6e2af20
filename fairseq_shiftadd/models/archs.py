"""Named architectures of the supernet (registered in :mod:`fairseq_shiftadd.registry`).

Each fills only the fields absent from the command line, then chains to :func:`supernet_base`; every other
field keeps its :class:`~fairseq_shiftadd.models.supernet.SupernetConfig` default. fairseq builds a named arch's
model from the stored configuration without the dataclass's defaults, so :func:`supernet_base` also gives a
field that a checkpoint predates (written before the field existed) its default, or, for a field whose default
changed since, the value the checkpoint was trained with (:data:`LEGACY_VALUES`): old checkpoints load and compute
as before. Models registered with their dataclass (``shiftadd_transformer``, the bare ``shiftadd_supernet``) get
their defaults from fairseq's merge instead; :func:`restore_legacy_values` applies the same table there.
"""
from __future__ import annotations

import dataclasses
from argparse import Namespace
from typing import Any, Dict

from omegaconf import OmegaConf

__all__ = [
    "LEGACY_VALUES",
    "restore_legacy_values",
    "supernet_base",
    "supernet_wmt14_en_de",
    "supernet_wmt14_en_fr",
    "supernet_hat_wmt14",
    "supernet_iwslt14_de_en",
    "supernet_demo",
    "supernet_tiny",
]


LEGACY_VALUES: Dict[str, Any] = {"block_details": "compact"}
"""Model-config fields whose default changed, with the value a config written before the field existed was
trained with: ``block_details`` (the original's details became the default; earlier models used this project's
``compact`` ones, which the three block-detail ints at 0 meant)."""


def supernet_base(args: Namespace) -> None:
    """The paper's recipe: all embeddings shared, dropout 0.3, attention dropout 0.1; absent fields: defaults.

    fairseq calls an arch with a command line's ``Namespace`` (the fields not given are absent: they get their
    defaults) and with a saved model config, a ``DictConfig`` that held every field of the code that saved it: a
    field absent there predates the config, and gets its :data:`LEGACY_VALUES` value where it has one.
    """
    args.share_all_embeddings = getattr(args, "share_all_embeddings", True)
    args.dropout = getattr(args, "dropout", 0.3)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    from .supernet import SupernetConfig  # the model's module imports fairseq; this one stays import-light

    legacy = LEGACY_VALUES if OmegaConf.is_config(args) else {}
    for field in dataclasses.fields(SupernetConfig):
        if not hasattr(args, field.name) and field.default is not dataclasses.MISSING:
            setattr(args, field.name, legacy.get(field.name, field.default))


def restore_legacy_values(cfg: Any) -> None:
    """Give each :data:`LEGACY_VALUES` field that the saved model config lacks its legacy value.

    For a model that fairseq builds from a merged copy of the saved ``model`` node (a dataclass-registered name):
    the copy already holds the new default, so the saved node (the copy's parent's ``model``) tells whether the
    field was there. A config without such a node (built in code, or by a named arch: :func:`supernet_base`
    filled it) is left alone.
    """
    parent = cfg._get_parent() if OmegaConf.is_config(cfg) else None
    node = parent.get("model") if parent is not None else None
    if OmegaConf.is_config(node) and node is not cfg:
        for name, value in LEGACY_VALUES.items():
            if name not in node:
                setattr(cfg, name, value)


def supernet_wmt14_en_de(args: Namespace) -> None:
    """WMT14 En-De space (docs/method.md section 2): embed 1024, FFN 4096, 6 + 6 layers, 16 heads, Q/K/V 512."""
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
