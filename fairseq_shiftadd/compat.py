"""Compatibility of fairseq 0.12 with today's PyTorch and with pip-installed plugins.

* PyTorch >= 2.6 loads checkpoints with ``weights_only=True`` by default; fairseq checkpoints
  pickle their configuration (argparse namespaces, omegaconf containers), so fairseq's own loader
  fails. :func:`install` makes the ``torch.load`` calls *inside fairseq's checkpoint module*
  default to ``weights_only=False`` (fairseq's behaviour before 2.6; load only checkpoints you
  trust, as always with pickles). Elsewhere ``torch.load`` keeps its safe default.
  A file that does not unpickle (truncated, corrupt, not a checkpoint) is refused with one line naming
  it (:class:`~fairseq_shiftadd.cli_errors.InputError`: "FILE: not a readable checkpoint"), here and in
  :func:`load_checkpoint_file`, instead of a ``UnicodeDecodeError`` without a file name.
* ``--user-dir`` imports the plugin folder by its basename. When this package was already
  imported from another folder (installed copy vs. source checkout), fairseq refuses with "not
  globally unique"; :func:`install` makes fairseq use the copy already imported, with a warning.
* fairseq keeps the best validation metric with ``min``/``max``, and ``min(nan, x)`` is ``nan``: one
  NaN validation loss became the "best" forever (and could be saved as ``checkpoint_best.pt``).
  :func:`install` makes a NaN or infinite metric count as "no validation" for that choice (the epoch and
  last checkpoints are still written; a warning says so).
* ``--patience`` early stopping (``fairseq_cli.train.should_stop_early``) has the same flaw: a NaN first
  validation became its best, no later loss compared better, and the run stopped after ``--patience``
  validations however much it improved. :func:`install` makes a NaN or infinite loss a validation without
  improvement: it is never the best, and it counts towards ``--patience`` (so a diverged run still stops).
* fairseq 0.12's ``batch_by_size`` drops the last batch when its size is not a multiple of
  ``--required-batch-size-multiple`` (default 8): ``fairseq-generate`` silently translated 1,008 of
  the 1,014 Multi30k validation sentences at ``--batch-size 100`` or ``128``, and validation losses left
  the same sentences out. :func:`install` puts the dropped sentences back as a last, smaller batch, so
  every sentence is decoded, validated and trained on.
* ``fairseq-interactive`` without ``--bpe sentencepiece --sentencepiece-model`` looks raw words up in a
  dictionary of sentencepiece pieces, so they silently become ``<unk>``. With a task whose dictionary
  holds such pieces (``▁``) and no ``--bpe``, it is refused with one line saying what to pass, before the
  model loads (fairseq offers no hook between task set-up and model loading, so the check wraps
  ``fairseq_cli.interactive.main`` and sets the task up once more: dictionaries only, milliseconds).
* fairseq's uncaught :class:`~fairseq_shiftadd.cli_errors.InputError` (a bad ``--subnet``, ``--space``,
  ``--valid-subnets``, an unreadable checkpoint) prints one line instead of a traceback
  (:func:`~fairseq_shiftadd.cli_errors.install_excepthook`).
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import pickle
import sys
import types
from typing import Any, Callable

import numpy as np
import torch

from .cli_errors import InputError, install_excepthook

logger = logging.getLogger(__name__)

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_NAME = os.path.basename(PACKAGE_DIR)


_UNREADABLE = (pickle.UnpicklingError, UnicodeDecodeError, EOFError, RuntimeError, AttributeError, ImportError,
               IndexError, KeyError, ValueError)
"""What ``torch.load`` raises for a file that is not a (complete) checkpoint."""


def _load(path_or_file: Any, **kwargs: Any) -> Any:
    """``torch.load``; a file that does not unpickle raises :class:`InputError` naming it."""
    try:
        return torch.load(path_or_file, **kwargs)
    except _UNREADABLE as err:
        name = getattr(path_or_file, "name", path_or_file)
        reason = " ".join(str(err).split())[:200]
        raise InputError(f"{name}: not a readable checkpoint ({type(err).__name__}: {reason})") from err


def load_checkpoint_file(path_or_file: Any, map_location: Any = "cpu") -> Any:
    """``torch.load`` for fairseq checkpoints (full unpickling, as fairseq expects).

    Raises:
        FileNotFoundError: no such file.
        InputError: the file is not a readable checkpoint (naming it).
    """
    return _load(path_or_file, map_location=map_location, weights_only=False)


class _TorchForFairseqCheckpoints(types.ModuleType):
    """``torch`` as fairseq's checkpoint module sees it: ``load`` defaults to ``weights_only=False``."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return _load(*args, **kwargs)


def _patch_checkpoint_loading() -> None:
    from fairseq import checkpoint_utils

    if not isinstance(checkpoint_utils.torch, _TorchForFairseqCheckpoints):
        checkpoint_utils.torch = _TorchForFairseqCheckpoints()


def _replace(owner: Any, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``owner.<name>`` by ``wrap(original)``, once (installing twice keeps the first wrapper).

    fairseq calls each patched function through its module or class, so replacing the attribute is enough;
    modules that imported the name directly keep the original.
    """
    original = getattr(owner, name)
    if getattr(original, "_shiftadd_patched", False):
        return
    wrapper = functools.wraps(original)(wrap(original))
    wrapper._shiftadd_patched = True  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def _keep_imported_copy(original: Callable[..., Any]) -> Callable[..., Any]:
    """``utils.import_user_module`` that accepts this package already imported from another folder."""

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

    return import_user_module


def _no_non_finite_best(original: Callable[..., Any]) -> Callable[..., Any]:
    """``checkpoint_utils.save_checkpoint`` for which a NaN or infinite metric is no validation.

    fairseq's function keeps the best value as an attribute of the module-level name ``save_checkpoint``,
    which is then this wrapper: ``fairseq_cli.train`` reads it there too.
    """

    def save_checkpoint(cfg: Any, trainer: Any, epoch_itr: Any, val_loss: Any) -> Any:
        if val_loss is not None and not math.isfinite(float(val_loss)):
            logger.warning("validation %s is %s: not a candidate for checkpoint_best",
                           getattr(cfg, "best_checkpoint_metric", "loss"), val_loss)
            val_loss = None
        return original(cfg, trainer, epoch_itr, val_loss)

    return save_checkpoint


def _keep_last_batch(original: Callable[..., Any]) -> Callable[..., Any]:
    """``data_utils.batch_by_size`` that returns the last batch that fairseq drops (see the module docstring)."""

    def batch_by_size(indices: Any, num_tokens_fn: Any, num_tokens_vec: Any = None, max_tokens: Any = None,
                      max_sentences: Any = None, required_batch_size_multiple: int = 1,
                      fixed_shapes: Any = None) -> Any:
        if not isinstance(indices, np.ndarray):
            indices = np.fromiter(indices, dtype=np.int64, count=-1)
        batches = original(indices, num_tokens_fn, num_tokens_vec, max_tokens, max_sentences,
                           required_batch_size_multiple, fixed_shapes)
        if fixed_shapes is None:
            # batches are consecutive slices of ``indices``: what is missing is the dropped tail
            covered = sum(len(batch) for batch in batches)
            if covered < len(indices):
                batches = [*batches, indices[covered:]]
        return batches

    return batch_by_size


_PIECE_MARK = "\u2581"


def _holds_pieces(dictionary: Any) -> bool:
    """Whether at least 10 % of ``dictionary``'s symbols are sentencepiece pieces (hold a word-start mark)."""
    symbols = getattr(dictionary, "symbols", [])[getattr(dictionary, "nspecial", 0):]
    return bool(symbols) and 10 * sum(_PIECE_MARK in s for s in symbols) >= len(symbols)


def _refuse_raw_words(original: Callable[..., Any]) -> Callable[..., Any]:
    """``fairseq_cli.interactive.main`` that refuses a dictionary of pieces without ``--bpe``, before loading.

    Raises:
        InputError: the task's source dictionary holds sentencepiece pieces and no ``--bpe`` is set.
    """

    def main(cfg: Any) -> Any:
        from fairseq import tasks
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf

        if isinstance(cfg, argparse.Namespace):
            cfg = convert_namespace_to_omegaconf(cfg)
        task = tasks.setup_task(cfg.task)  # dictionaries only; fairseq sets it up again, then loads the model
        if task.build_bpe(cfg.bpe) is None and _holds_pieces(task.source_dictionary):
            raise InputError(
                "the dictionary holds sentencepiece pieces but no --bpe is set: raw input words would become "
                "<unk>; pass --bpe sentencepiece --sentencepiece-model PREPARED/sentencepiece/spm.model"
            )
        return original(cfg)

    return main


def _no_non_finite_patience(original: Callable[..., Any]) -> Callable[..., Any]:
    """``fairseq_cli.train.should_stop_early`` for which a NaN or infinite loss is a validation without improvement.

    fairseq keeps its state (``best``, ``num_runs``) as attributes of the module-level name, which is then
    this wrapper, so a finite loss goes through fairseq's own rule unchanged.
    """

    def should_stop_early(cfg: Any, valid_loss: Any) -> bool:
        if valid_loss is None or math.isfinite(float(valid_loss)) or cfg.checkpoint.patience <= 0:
            return original(cfg, valid_loss)
        should_stop_early.num_runs = getattr(should_stop_early, "num_runs", 0) + 1
        logger.warning("validation loss is %s: no improvement (%d of --patience %d)", valid_loss,
                       should_stop_early.num_runs, cfg.checkpoint.patience)
        return should_stop_early.num_runs >= cfg.checkpoint.patience

    return should_stop_early


def install() -> None:
    """Apply every fix above (idempotent)."""
    from fairseq import checkpoint_utils, utils
    from fairseq.data import data_utils
    from fairseq_cli import interactive, train

    _patch_checkpoint_loading()
    _replace(utils, "import_user_module", _keep_imported_copy)
    _replace(checkpoint_utils, "save_checkpoint", _no_non_finite_best)
    _replace(data_utils, "batch_by_size", _keep_last_batch)
    _replace(train, "should_stop_early", _no_non_finite_patience)
    _replace(interactive, "main", _refuse_raw_words)
    install_excepthook()
