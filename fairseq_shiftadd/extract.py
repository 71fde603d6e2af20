"""Export a subnet of a trained supernet as a standalone ``shiftadd_transformer`` checkpoint.

    fairseq-shiftadd-extract-subnet --checkpoint SUPERNET.pt --subnet SUB.yaml --output SUBNET.pt [--data DIR]

``--subnet`` is a .json/.yaml file, inline JSON, ``largest`` or ``smallest``. The output is a fairseq
checkpoint whose model is :class:`~fairseq_shiftadd.models.subnet.ShiftAddTransformer` with the
inherited weights (:func:`~fairseq_shiftadd.models.subnet.extract_subnet_state`), true parameter
shapes and the subnet stored inline, ready for ``fairseq-generate`` or for fine-tuning with
``fairseq-train --restore-file SUBNET.pt --reset-optimizer --reset-lr-scheduler --reset-meters
--reset-dataloader`` (the supernet's optimizer state does not fit the subnet and is dropped).
``--data`` overrides the data directory recorded in the checkpoint (for its dictionaries).

Nothing is lost: ``--subnet`` is parsed before the checkpoint loads and checked against its space after;
``--output`` may not be the input checkpoint, an existing output is replaced only with ``--force``, and the
output is written to ``OUTPUT.partial`` and renamed (a killed export leaves no half-written checkpoint).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from fairseq import checkpoint_utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from omegaconf import OmegaConf, open_dict

from . import compat
from .cli_errors import InputError, add_debug_flag, run_main
from .models.subnet import SubnetModelConfig, extract_subnet_state
from .models.supernet import ShiftAddSupernet
from .atomic import save_torch
from .outputs import check_output
from .space import SubnetConfig, parse_subnet_spec, resolve_subnet

logger = logging.getLogger(__name__)

__all__ = ["extract_checkpoint", "main"]

SUBNET_MODEL = "shiftadd_transformer"


def extract_checkpoint(
    checkpoint: Path, subnet: str, output: Path, data: Optional[str] = None, force: bool = False
) -> SubnetConfig:
    """Write the standalone checkpoint of ``subnet`` to ``output`` (atomically); returns the subnet.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        InputError: ``output`` is the checkpoint, or exists and not ``force``; ``subnet`` is not a valid spec;
            the checkpoint is unreadable or not a supernet's; the subnet is not in its space.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    check_output(output, [checkpoint], force)
    parse_subnet_spec(subnet)  # a bad spec fails before the checkpoint loads
    state = compat.load_checkpoint_file(checkpoint)
    saved_cfg = state.get("cfg") if isinstance(state, dict) else None
    cfg = OmegaConf.create(saved_cfg) if isinstance(saved_cfg, dict) else saved_cfg
    model_name = None if cfg is None or cfg.get("model") is None else cfg.model.get("_name")
    registered = ARCH_MODEL_REGISTRY.get(model_name) or MODEL_REGISTRY.get(model_name)
    if registered is not ShiftAddSupernet:
        raise InputError(f"{checkpoint} is not a shiftadd_supernet checkpoint (model: {model_name!r})")
    overrides = {"data": data} if data else {}
    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], arg_overrides=overrides, strict=True)
    supernet = models[0]
    sub = resolve_subnet(subnet, supernet.space)
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
    save_torch(state, output)
    return sub


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a supernet's subnet as a standalone checkpoint.")
    parser.add_argument("--checkpoint", required=True, type=Path, help="supernet checkpoint")
    parser.add_argument("--subnet", required=True, help="'largest', 'smallest', a .json/.yaml file or inline JSON")
    parser.add_argument("--output", required=True, type=Path, help="where to write the subnet checkpoint")
    parser.add_argument("--data", default=None, help="data directory with the dictionaries (default: recorded)")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    sub = extract_checkpoint(args.checkpoint, args.subnet, args.output, args.data, force=args.force)
    logger.info("wrote %s (%d encoder + %d decoder layers)", args.output, len(sub.encoder), len(sub.decoder))


main = run_main(_main, "fairseq-shiftadd-extract-subnet")

if __name__ == "__main__":
    main()
