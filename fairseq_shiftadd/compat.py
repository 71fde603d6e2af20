"""Compatibility of fairseq 0.12 with today's PyTorch and with pip-installed plugins.

* PyTorch >= 2.6 loads checkpoints with ``weights_only=True`` by default; fairseq checkpoints
  pickle their configuration (argparse namespaces, omegaconf containers), so fairseq's own loader
  fails. :func:`install` makes the ``torch.load`` calls *inside fairseq's checkpoint module*
  default to ``weights_only=False`` (fairseq's behaviour before 2.6; load only checkpoints you
  trust, as always with pickles). Elsewhere ``torch.load`` keeps its safe default.
* ``--user-dir`` imports the plugin folder by its basename. When this package was already
  imported from another folder (installed copy vs. source checkout), fairseq refuses with "not
  globally unique"; :func:`install` makes fairseq use the copy already imported, with a warning.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import types
from typing import Any

import torch

logger = logging.getLogger(__name__)

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_NAME = os.path.basename(PACKAGE_DIR)


def load_checkpoint_file(path_or_file: Any, map_location: Any = "cpu") -> Any:
    """``torch.load`` for fairseq checkpoints (full unpickling, as fairseq expects)."""
    return torch.load(path_or_file, map_location=map_location, weights_only=False)


class _TorchForFairseqCheckpoints(types.ModuleType):
    """``torch`` as fairseq's checkpoint module sees it: ``load`` defaults to ``weights_only=False``."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)


def _patch_checkpoint_loading() -> None:
    from fairseq import checkpoint_utils

    if not isinstance(checkpoint_utils.torch, _TorchForFairseqCheckpoints):
        checkpoint_utils.torch = _TorchForFairseqCheckpoints()


def _patch_user_dir_import() -> None:
    from fairseq import utils

    original = utils.import_user_module
    if getattr(original, "_shiftadd_patched", False):
        return

    @functools.wraps(original)
    def import_user_module(args: Any) -> None:
        user_dir = getattr(args, "user_dir", None)
        if user_dir is not None:
            path = os.path.realpath(os.path.abspath(user_dir))
            loaded = sys.modules.get(PACKAGE_NAME)
            if (
                os.path.basename(path) == PACKAGE_NAME
                and loaded is not None
                and os.path.realpath(PACKAGE_DIR) != path
            ):
                logger.warning(
                    "--user-dir=%s: %s is already imported from %s; using that copy",
                    user_dir, PACKAGE_NAME, PACKAGE_DIR,
                )
                return None
        return original(args)

    import_user_module._shiftadd_patched = True  # type: ignore[attr-defined]
    utils.import_user_module = import_user_module
    # modules that did ``from fairseq.utils import import_user_module`` are not affected; fairseq's
    # entry points call ``utils.import_user_module`` through the module.


def install() -> None:
    """Apply both fixes (idempotent)."""
    _patch_checkpoint_loading()
    _patch_user_dir_import()
