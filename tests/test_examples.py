"""The WMT14 recipes under examples/ parse with fairseq and keep the original hyperparameters."""
import shlex
from pathlib import Path

import pytest
from fairseq import options

REPO = Path(__file__).resolve().parents[1]
ARGS_FILES = sorted((REPO / "examples").glob("*/*.args"))


def _flags(path: Path) -> list:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [token for line in lines for token in shlex.split(line)]


@pytest.mark.parametrize("path", ARGS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_parses_with_original_hyperparameters(path: Path, tmp_path: Path) -> None:
    extra = ["--subnet", str(tmp_path / "sub.yaml")] if path.name == "subnet.args" else []
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(tmp_path), *_flags(path), *extra])
    assert args.arch.startswith("shiftadd_")
    assert args.dropout == 0.3 and args.attention_dropout == 0.1 and args.label_smoothing == 0.1
    assert args.lr == [1e-3] and args.max_update == 40000 and args.max_tokens == 4096
    assert args.warmup_updates == (10000 if path.name == "supernet.args" else 4000)
    assert eval(args.adam_betas) == (0.9, 0.98)
    assert args.space == path.parent.name  # the arch (or --space) selects the dataset's search space


def test_both_datasets_have_both_recipes() -> None:
    names = {(p.parent.name, p.name) for p in ARGS_FILES}
    for dataset in ("wmt14_en_de", "wmt14_en_fr"):
        assert {(dataset, "supernet.args"), (dataset, "subnet.args")} <= names
