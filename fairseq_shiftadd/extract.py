"""Export a subnet of a trained supernet as a standalone ``shiftadd_transformer`` checkpoint.

    fairseq-shiftadd-extract-subnet --checkpoint SUPERNET.pt --subnet SUB.yaml --output SUBNET.pt [--data DIR]

``--subnet`` is a .json/.yaml file, inline JSON, ``largest`` or ``smallest``. The output is a fairseq
checkpoint whose model is :class:`~fairseq_shiftadd.models.subnet.ShiftAddTransformer` with the
inherited weights (:func:`~fairseq_shiftadd.models.subnet.extract_subnet_state`), true parameter
shapes and the subnet stored inline, ready for ``fairseq-generate`` or for fine-tuning with
``fairseq-train --restore-file SUBNET.pt --reset-optimizer --reset-lr-scheduler --reset-meters
--reset-dataloader`` (the supernet's optimizer state does not fit the subnet and is dropped).
``--data`` overrides the data directory recorded in the checkpoint (for its dictionaries).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from fairseq import checkpoint_utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from omegaconf import OmegaConf, open_dict

from . import compat
from .models.subnet import SubnetModelConfig, extract_subnet_state
from .models.supernet import ShiftAddSupernet, load_subnet
from .space import SubnetConfig, largest, smallest

logger = logging.getLogger(__name__)

__all__ = ["extract_checkpoint", "main"]

SUBNET_MODEL = "shiftadd_transformer"


def _resolve(spec: str, supernet: ShiftAddSupernet) -> SubnetConfig:
    named = {"largest": largest, "smallest": smallest}
    return named[spec](supernet.space) if spec in named else load_subnet(spec)


def extract_checkpoint(checkpoint: Path, subnet: str, output: Path, data: Optional[str] = None) -> SubnetConfig:
    """Write the standalone checkpoint of ``subnet`` to ``output``; returns the subnet.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: it is not a supernet checkpoint, or the subnet is not in its space.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    state = compat.load_checkpoint_file(checkpoint)
    saved_cfg = state.get("cfg") if isinstance(state, dict) else None
    cfg = OmegaConf.create(saved_cfg) if isinstance(saved_cfg, dict) else saved_cfg
    model_name = None if cfg is None or cfg.get("model") is None else cfg.model.get("_name")
    registered = ARCH_MODEL_REGISTRY.get(model_name) or MODEL_REGISTRY.get(model_name)
    if registered is not ShiftAddSupernet:
        raise ValueError(f"{checkpoint} is not a shiftadd_supernet checkpoint (model: {model_name!r})")
    overrides = {"data": data} if data else {}
    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], arg_overrides=overrides, strict=True)
    supernet = models[0]
    sub = _resolve(subnet, supernet)
    weights = extract_subnet_state(supernet, sub)

    model_cfg = OmegaConf.structured(SubnetModelConfig)
    for key in model_cfg:
        if key in cfg.model and key != "subnet":
            model_cfg[key] = cfg.model[key]
    model_cfg.subnet = sub.to_json()
    model_cfg._name = SUBNET_MODEL
    with open_dict(cfg):
        cfg.model = model_cfg
        if cfg.get("task") is not None and "subnet" in cfg.task:
            cfg.task.subnet = None
    state["cfg"] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # as fairseq saves it
    state["model"] = weights
    state["last_optimizer_state"] = None
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, output)
    return sub


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a supernet's subnet as a standalone checkpoint.")
    parser.add_argument("--checkpoint", required=True, type=Path, help="supernet checkpoint")
    parser.add_argument("--subnet", required=True, help="'largest', 'smallest', a .json/.yaml file or inline JSON")
    parser.add_argument("--output", required=True, type=Path, help="where to write the subnet checkpoint")
    parser.add_argument("--data", default=None, help="data directory with the dictionaries (default: recorded)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    sub = extract_checkpoint(args.checkpoint, args.subnet, args.output, args.data)
    logger.info("wrote %s (%d encoder + %d decoder layers)", args.output, len(sub.encoder), len(sub.decoder))


if __name__ == "__main__":
    main()
