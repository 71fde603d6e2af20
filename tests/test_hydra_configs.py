"""The recipes' ``fairseq-hydra-train`` configs: each is what ``examples/args_to_yaml.py`` writes from its stage's
``.args`` file, and fairseq composes it (Hydra, then ``add_defaults`` as ``fairseq-hydra-train`` does) into the
configuration ``fairseq-train`` gets from the ``.args``, with the plugin's task, model and criterion."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.dataclass.initialize import add_defaults, hydra_init
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fairseq_shiftadd.registry import CRITERIONS, MODELS, TASKS
from recipe_args import EXAMPLES, args_to_yaml

STAGES = args_to_yaml.training_stages()
RECIPES = ("wmt14_en_de", "wmt14_en_fr", "iwslt14_de_en", "multi30k_en_de")


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_every_recipe_ships_supernet_and_subnet_configs() -> None:
    shipped = {_id(p) for p in STAGES}
    assert {f"{r}/{s}" for r in RECIPES for s in ("supernet", "subnet")} <= shipped
    assert {_id(p) for p in EXAMPLES.glob("*/*.yaml")} == shipped  # no YAML without its .args


@pytest.mark.parametrize("stage", STAGES, ids=_id)
def test_shipped_yaml_is_generated_from_its_args(stage: Path) -> None:
    assert stage.with_suffix(".yaml").read_text(encoding="utf-8") == args_to_yaml.render(stage), (
        f"{stage.with_suffix('.yaml')} is stale: run python examples/args_to_yaml.py"
    )


def _resolved(config: Any) -> Dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.create(config), resolve=True, enum_to_str=True)


def _run_time(stage: Path, tmp_path: Path) -> Dict[str, str]:
    """The values the scripts give at run time, as Hydra overrides and as fairseq-train flags."""
    values = {"task.data": str(tmp_path / "data-bin"), "checkpoint.save_dir": str(tmp_path / "save")}
    if "model.subnet" in args_to_yaml.required_fields(stage):
        values["model.subnet"] = str(tmp_path / "best.yaml")
    return values


@pytest.mark.parametrize("stage", STAGES, ids=_id)
def test_yaml_composes_to_the_args_configuration(stage: Path, tmp_path: Path) -> None:
    values = _run_time(stage, tmp_path)
    hydra_init(stage.stem)  # as fairseq-hydra-train: FairseqConfig is the schema of the config of that name
    with initialize_config_dir(config_dir=str(stage.parent), version_base="1.1"):
        composed = compose(config_name=stage.stem, overrides=[f"{k}={v}" for k, v in values.items()])
    composed = OmegaConf.create(OmegaConf.to_container(composed))  # without Hydra's node
    add_defaults(composed)
    from_yaml = _resolved(composed)

    flags: List[str] = [values["task.data"], *args_to_yaml.args_flags(stage), "--save-dir",
                        values["checkpoint.save_dir"]]
    if "model.subnet" in values:
        flags += ["--subnet", values["model.subnet"]]
    from_args = _resolved(args_to_yaml.training_config(flags))

    names = {group: from_yaml[group]["_name"] for group in ("task", "model", "criterion")}
    assert ARCH_MODEL_REGISTRY[names["model"]] in {cls for cls, _ in MODELS.values()}
    assert names["task"] in TASK_REGISTRY and names["criterion"] in CRITERION_REGISTRY
    if stage.stem.endswith("supernet"):  # the supernet trains with the plugin's task and criterion
        assert TASK_REGISTRY[names["task"]] is TASKS[names["task"]][0]
        assert CRITERION_REGISTRY[names["criterion"]] is CRITERIONS[names["criterion"]][0]
    differences = {
        f"{group}.{field}": (value, (from_yaml.get(group) or {}).get(field))
        for group, fields in from_args.items() if isinstance(fields, dict)
        for field, value in fields.items() if (from_yaml.get(group) or {}).get(field) != value
    }
    assert not differences, f"{stage.with_suffix('.yaml')} vs {stage.name} (args, yaml): {differences}"
