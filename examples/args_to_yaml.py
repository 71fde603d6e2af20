"""The recipes' training stages as ``fairseq-hydra-train`` configs, generated from their ``.args`` files.

The ``.args`` file of a stage stays its one source of truth (``examples/pipeline.sh``, ``scripts/demo.sh`` and
``examples/multi30k_en_de/gpu.sh`` train from it with ``fairseq-train``); this tool writes ``STAGE.yaml`` beside
every ``STAGE.args`` that trains one of the plugin's models (``--arch shiftadd_*``), and
``tests/test_hydra_configs.py`` checks that each shipped YAML is what the tool writes and that fairseq composes it
into the configuration the ``.args`` give to ``fairseq-train``.

A YAML holds, per group of fairseq's configuration, the fields whose value from the ``.args`` differs from
the group's dataclass default (a mirror such as ``optimizer.lr = ${optimization.lr}`` only when it differs from
its source), the ``_name`` of every registered component (task, model, criterion, optimizer, scheduler,
scoring), and ``???`` (required) for what the scripts give at run time: ``task.data``, ``checkpoint.save_dir``
and the retrained subnet's ``model.subnet``.

    python examples/args_to_yaml.py            # rewrite every training stage's YAML
    python examples/args_to_yaml.py --check    # exit 1 naming every YAML that differs from its .args
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

EXAMPLES = Path(__file__).resolve().parent
MISSING = "???"
RUN_TIME = {"shiftadd_transformer": {"model.subnet": "--subnet"}}
"""Fields (and their flags) the scripts give at run time, per architecture, besides the data and ``--save-dir``."""
CHOOSERS = ("--user-dir", "--task", "--arch", "--criterion", "--optimizer", "--lr-scheduler")
"""The flags that choose the plugin and the components."""
HYDRA = {"run": {"dir": "${checkpoint.save_dir}/hydra"}, "job": {"chdir": False}}
"""Hydra's own outputs (config, log) beside the checkpoints; no chdir, as ``common.user_dir`` is relative."""


def args_flags(path: Path) -> List[str]:
    """The flags of an ``.args`` file, read by the recipes' one parser (``examples/args.sh``)."""
    script = f'source "{EXAMPLES / "args.sh"}" && args_flags "$0"'
    return subprocess.run(["bash", "-c", script, str(path)], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _arch(flags: List[str]) -> Optional[str]:
    return flags[flags.index("--arch") + 1] if "--arch" in flags else None


def training_stages() -> List[Path]:
    """Every ``.args`` file of the recipes that trains one of the plugin's models (``--arch shiftadd_*``), sorted.

    The Multi30k baseline (fairseq's own ``--arch transformer``) has none: fairseq 0.12 configures that
    architecture through an argparse namespace, not a dataclass, so it has no Hydra config to describe.
    """
    return sorted(p for p in EXAMPLES.glob("*/*.args") if (_arch(args_flags(p)) or "").startswith("shiftadd_"))


def training_config(flags: List[str]) -> Dict[str, Any]:
    """fairseq's configuration of ``fairseq-train DATA FLAGS`` (unresolved, as plain containers).

    Raises:
        SystemExit: fairseq's parser refuses a flag.
    """
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    args = options.parse_args_and_arch(options.get_training_parser(), flags)
    return OmegaConf.to_container(convert_namespace_to_omegaconf(args), resolve=False)


def stage_flags(path: Path, minimal: bool = False) -> List[str]:
    """``fairseq-train``'s arguments of a stage with ``???`` for what the scripts give at run time.

    ``minimal``: only the flags that choose the plugin and the components (``--user-dir``, ``--task``,
    ``--arch``, ...), i.e. the architecture's defaults.
    """
    flags = args_flags(path)
    arch = _arch(flags)
    if minimal:
        flags = [word for i, name in enumerate(flags) if name in CHOOSERS for word in flags[i:i + 2]]
    run_time = [word for flag in RUN_TIME.get(arch, {}).values() for word in (flag, MISSING)]
    return [MISSING, *flags, "--save-dir", MISSING, *run_time]


def _defaults(group: str, name: Optional[str]) -> Dict[str, Any]:
    """The dataclass defaults of a group (of its registered component ``name`` for the registries)."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY
    from fairseq.registry import REGISTRIES
    from fairseq.tasks import TASK_DATACLASS_REGISTRY
    from omegaconf import OmegaConf

    if group == "task":
        dataclass = TASK_DATACLASS_REGISTRY.get(name)
    elif group == "model":
        dataclass = MODEL_DATACLASS_REGISTRY.get(ARCH_MODEL_NAME_REGISTRY.get(name, name))
    elif group in REGISTRIES:
        dataclass = REGISTRIES[group]["dataclass_registry"].get(name)
    else:
        dataclass = getattr(FairseqConfig(), group)
    if dataclass is None:
        raise ValueError(f"{group} '{name}' has no registered dataclass: a Hydra config cannot describe it")
    return OmegaConf.to_container(OmegaConf.structured(dataclass), resolve=False)


def _mirror_source(value: Any, config: Dict[str, Any]) -> Any:
    """The value a default ``${group.field}`` points to in ``config``."""
    group, field = value[2:-1].split(".")
    return config[group][field]


def hydra_config(config: Dict[str, Any], arch_defaults: Dict[str, Any]) -> Dict[str, Any]:
    """The fields of ``config`` that differ from their defaults, the components' ``_name`` and Hydra's settings.

    A model field is kept when it differs from the model's dataclass default or from ``arch_defaults`` (the
    model group the architecture alone gives): fairseq fills a Hydra model node from either, depending on
    whether the plugin was imported before the config was completed.

    Raises:
        ValueError: the model has no dataclass configuration (fairseq's legacy argparse architectures).
    """
    if not isinstance(config["model"], dict):
        raise ValueError(f"model '{config['model']._name}' is configured by argparse only: no Hydra config")
    out: Dict[str, Any] = {}
    for group, values in config.items():
        if not isinstance(values, dict):
            continue
        name = values.get("_name")
        defaults = _defaults(group, name)
        changed = {"_name": name} if name is not None else {}
        for field, value in values.items():
            default = defaults.get(field)
            if isinstance(default, str) and default.startswith("${"):
                default = _mirror_source(default, config)
            by_arch = arch_defaults.get(field, value) if group == "model" else value
            if field != "_name" and (value != default or value != by_arch):
                changed[field] = value
        if changed:
            out[group] = changed
    return {**out, "hydra": HYDRA}


def render(path: Path) -> str:
    """The YAML text of the training stage ``path`` (an ``.args`` file)."""
    from omegaconf import OmegaConf

    import fairseq_shiftadd  # noqa: F401  (registers the plugin's task, model and criterion)

    relative = path.relative_to(EXAMPLES.parent)
    header = (
        "# @package _global_\n"
        f"# GENERATED from {relative} by examples/args_to_yaml.py: edit the .args file, then rerun the tool.\n"
        f"#   fairseq-hydra-train --config-dir {relative.parent} --config-name {path.stem} "
        "task.data=DATA checkpoint.save_dir=DIR"
        + "".join(f" {field}={field.split('.')[-1].upper()}" for field in required_fields(path)) + "\n"
        "# (from the repository root: common.user_dir is relative to it)\n"
    )
    arch_defaults = training_config(stage_flags(path, minimal=True))["model"]
    return header + OmegaConf.to_yaml(hydra_config(training_config(stage_flags(path)), arch_defaults))


def required_fields(path: Path) -> List[str]:
    """The fields a stage's YAML leaves required (``???``) besides the data and the save directory."""
    return list(RUN_TIME.get(_arch(args_flags(path)), {}))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a YAML differs (default: off)")
    args = parser.parse_args(argv)
    stale = []
    for path in training_stages():
        target, text = path.with_suffix(".yaml"), render(path)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(target)
        if not args.check:
            tmp = target.with_suffix(".yaml.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
            print(f"wrote {target}")
    if args.check and stale:
        print("args_to_yaml: stale (rerun python examples/args_to_yaml.py): "
              + ", ".join(str(p) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
