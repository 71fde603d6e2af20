"""The space a model is built over, recorded in its config so that a checkpoint is self-contained.

A model config (:class:`~.supernet.ModelConfig`) names a space (``space``) and its block details
(``block_details`` and the three overrides); when the model is built, :func:`model_space` resolves them to a
:class:`~fairseq_shiftadd.space.SearchSpace` and :func:`record_space` writes its full definition
(``space_definition``, the space's JSON) and ``space_hash`` (its :meth:`~fairseq_shiftadd.space.SearchSpace.sha256`)
into the config, which fairseq saves in every checkpoint. Building from a config:

* with a recorded definition: the model is built from it, whatever the named space in the code says now (a later
  edit of ``demo`` cannot break a demo checkpoint); a hash that does not match the definition is refused;
* without one (a checkpoint from before the record, or a fresh command line): the named space with the config's
  block details (a config that predates ``block_details`` was trained with ``compact``: the rule for absent fields
  is :func:`~.archs.restore_legacy_values`).

:func:`check_state_fits` refuses a state dict that does not fit the model (a space edited since an old checkpoint
was saved, other block details) with one line naming the space and the first parameter that differs, instead of
torch's size-mismatch traceback.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Union

from omegaconf import OmegaConf
from torch import Tensor, nn

from ..cli_errors import InputError
from ..space import BLOCK_DETAIL_OVERRIDES, BlockDetails, SearchSpace, get_space
from .archs import LEGACY_VALUES

__all__ = ["model_space", "checkpoint_space", "record_space", "store_in_config", "check_state_fits"]


def model_space(cfg: Any) -> SearchSpace:
    """The space a model of config ``cfg`` is built over: the recorded definition, else the named space with the
    config's block details.

    Raises:
        InputError: a recorded definition that is unreadable or does not match ``space_hash``; an unknown space
            name; block details the space's widths and heads do not allow (naming the field).
    """
    definition = getattr(cfg, "space_definition", "") or ""
    if definition:
        try:
            space = SearchSpace.from_json(definition)
        except ValueError as err:
            raise InputError(f"model config space_definition: not a SearchSpace ({err})") from None
        if space.sha256() != getattr(cfg, "space_hash", ""):
            raise InputError(
                f"model config space_definition of space {space.name!r} does not match its space_hash "
                f"({str(getattr(cfg, 'space_hash', ''))[:12] or 'none'} recorded, {space.sha256()[:12]} computed): "
                "the checkpoint's config was edited; refusing to build from it"
            )
        return space
    details = {name: getattr(cfg, name) for name in BLOCK_DETAIL_OVERRIDES}
    try:
        return dataclasses.replace(
            get_space(cfg.space), block_details=BlockDetails(str(cfg.block_details)), **details
        )
    except ValueError as err:
        raise InputError(f"--space {cfg.space} with the block details given: {err}") from None


def checkpoint_space(path: Union[str, Path]) -> SearchSpace:
    """The space the model of the checkpoint at ``path`` was built over, read from its saved model config without
    building the model (absent fields: :data:`~.archs.LEGACY_VALUES`, else the config's defaults).

    Raises:
        InputError: the file is not a readable checkpoint of a model with a space, or as :func:`model_space`.
    """
    from .. import compat
    from .supernet import ModelConfig  # the models import this module

    state = compat.load_checkpoint_file(path)
    cfg = state.get("cfg") if isinstance(state, dict) else None
    saved = cfg.get("model") if isinstance(cfg, Mapping) else None
    if not isinstance(saved, Mapping) or "space" not in saved:
        raise InputError(f"{path}: not a checkpoint of a shiftadd model (its model config names no space)")
    values = {f.name: saved.get(f.name, LEGACY_VALUES.get(f.name, f.default)) for f in dataclasses.fields(ModelConfig)}
    return model_space(SimpleNamespace(**values))


def record_space(cfg: Any, space: SearchSpace) -> None:
    """Write ``space``'s definition and hash into ``cfg`` (and into the saved training config, see
    :func:`store_in_config`), with its name and block details, so the checkpoint rebuilds exactly ``space``."""
    store_in_config(cfg, "space", space.name)
    store_in_config(cfg, "block_details", space.block_details.value)
    for name in BLOCK_DETAIL_OVERRIDES:
        store_in_config(cfg, name, getattr(space, name))
    store_in_config(cfg, "space_definition", space.to_json())
    store_in_config(cfg, "space_hash", space.sha256())


def store_in_config(cfg: Any, name: str, value: Any) -> None:
    """Set ``cfg.<name> = value``, also in the training config's ``model`` node that checkpoints save.

    fairseq builds a model from a merged *copy* of that node (``merge_with_parent``), which keeps a link
    to the node's parent; without following it a value resolved at build time (a subnet file's contents, the
    space's definition) would not be saved, and the checkpoint would depend on the command line's files and code.
    """
    given = getattr(cfg, name, None)
    setattr(cfg, name, value)
    parent = cfg._get_parent() if OmegaConf.is_config(cfg) else None
    node = parent.get("model") if parent is not None else None
    if OmegaConf.is_config(node) and node is not cfg and node.get(name) == given:
        setattr(node, name, value)


def check_state_fits(model: nn.Module, state_dict: Mapping[str, Tensor], space: SearchSpace, strict: bool) -> None:
    """Refuse ``state_dict`` unless every tensor has the shape of ``model``'s (and, if ``strict``, the keys match).

    Raises:
        InputError: one line naming ``space`` and the first parameter whose shape differs (or a missing or
            unexpected key), with the number of such differences.
    """
    own = model.state_dict()
    shapes = [
        f"{key} has shape {tuple(tensor.shape)} in the checkpoint, {tuple(own[key].shape)} in the model"
        for key, tensor in state_dict.items()
        if key in own and isinstance(tensor, Tensor) and tensor.shape != own[key].shape
    ]
    missing = [f"{key} is missing from the checkpoint" for key in own if key not in state_dict] if strict else []
    unexpected = [f"{key} is not in the model" for key in state_dict if key not in own] if strict else []
    differences = shapes + missing + unexpected
    if differences:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise InputError(
            f"checkpoint does not fit the model built from space {space.name!r} (block_details "
            f"{space.block_details.value!r}): {differences[0]}{more}; the space or the block details changed since "
            "it was saved (pass the ones it was trained with, e.g. --block-details compact for a checkpoint that "
            "predates that option)"
        )
