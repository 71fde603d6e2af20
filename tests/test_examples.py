"""The recipes under examples/: every .args file parses with the tool that reads it and keeps the original
hyperparameters, and ``examples/pipeline.sh`` runs all four stages end to end at a tiny scale."""
import os
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from fairseq import options

from fairseq_shiftadd.search.cli import get_parser as search_parser
from fairseq_shiftadd.space import SubnetConfig, check, get_space
from recipe_args import args_flags

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DATASETS = ("wmt14_en_de", "wmt14_en_fr", "iwslt14_de_en")
STAGE_FILES = ("supernet.args", "search.args", "subnet.args", "generate.args", "recipe.env")

# The original's training hyperparameters (docs/method.md section 4 for WMT; its IWSLT configuration).
TRAINING = {
    "wmt14_en_de": dict(lr=[1e-3], max_update=40000, weight_decay=0.0, lr_scheduler="cosine", warmup=(10000, 4000)),
    "wmt14_en_fr": dict(lr=[1e-3], max_update=40000, weight_decay=0.0, lr_scheduler="cosine", warmup=(10000, 4000)),
    "iwslt14_de_en": dict(
        lr=[5e-4], max_update=50000, weight_decay=1e-4, lr_scheduler="inverse_sqrt", warmup=(10000, 4000)
    ),
}


def _flags(path: Path) -> List[str]:
    return args_flags(path)


def _recipe_env(dataset: str) -> Dict[str, str]:
    env = {**os.environ}
    for name in ("TOTAL_UPDATE_FREQ", "AVERAGE_LAST"):
        env.pop(name, None)
    script = f"source {EXAMPLES / dataset / 'recipe.env'} && echo $TARGET_LANG $TOTAL_UPDATE_FREQ $AVERAGE_LAST"
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout.split()
    return dict(zip(("TARGET_LANG", "TOTAL_UPDATE_FREQ", "AVERAGE_LAST"), out))


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_has_every_stage(dataset: str) -> None:
    assert all((EXAMPLES / dataset / name).is_file() for name in STAGE_FILES)
    env = _recipe_env(dataset)
    assert env["TARGET_LANG"] == dataset.split("_")[-1]
    assert int(env["TOTAL_UPDATE_FREQ"]) == (128 if dataset.startswith("wmt14") else 1)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("stage", ("supernet", "subnet"))
def test_training_recipe_keeps_original_hyperparameters(dataset: str, stage: str, tmp_path: Path) -> None:
    extra = ["--subnet", str(tmp_path / "sub.yaml")] if stage == "subnet" else []
    flags = _flags(EXAMPLES / dataset / f"{stage}.args")
    args = options.parse_args_and_arch(options.get_training_parser(), [str(tmp_path), *flags, *extra])
    expected = TRAINING[dataset]
    assert args.arch == ("shiftadd_transformer" if stage == "subnet" else f"shiftadd_supernet_{dataset}")
    assert args.space == dataset  # the arch (or --space) selects the dataset's search space
    assert args.dropout == 0.3 and args.attention_dropout == 0.1 and args.label_smoothing == 0.1
    assert args.max_tokens == 4096 and eval(args.adam_betas) == (0.9, 0.98)
    assert args.lr == expected["lr"] and args.max_update == expected["max_update"]
    assert args.weight_decay == expected["weight_decay"] and args.lr_scheduler == expected["lr_scheduler"]
    assert args.warmup_updates == expected["warmup"][0 if stage == "supernet" else 1]


@pytest.mark.parametrize("dataset", DATASETS)
def test_search_recipe_has_the_original_evolution_and_two_constraints(dataset: str, tmp_path: Path) -> None:
    flags = _flags(EXAMPLES / dataset / "search.args")
    args = options.parse_args_and_arch(search_parser(), [str(tmp_path), *flags, "--path", "x.pt", "--save-dir", "s"])
    assert (args.population, args.parents, args.mutations, args.crossovers) == (125, 25, 50, 50)
    assert args.mutation_prob == 0.3 and 15 <= args.generations <= 30 and args.objective == "loss"
    metrics = {c.split("<=")[0] for c in args.constraint}
    assert metrics == {"energy_mj", "analytical_latency_ms"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_generate_recipe(dataset: str, tmp_path: Path) -> None:
    flags = _flags(EXAMPLES / dataset / "generate.args")
    args = options.parse_args_and_arch(options.get_generation_parser(), [str(tmp_path), *flags, "--path", "x.pt"])
    assert args.post_process == "sentencepiece"
    if dataset.startswith("wmt14"):  # docs/method.md section 6
        assert (args.beam, args.lenpen) == (4, 0.6)


_SMALL = "--arch {} --space tiny --max-tokens 2048 --train-subset valid --warmup-updates 4 --lr 3e-3 --num-workers 0"
TINY_PIPELINE = {
    "OMP_NUM_THREADS": "1",
    "TOTAL_UPDATE_FREQ": "1",
    "AVERAGE_LAST": "1",
    "SUPERNET_FLAGS": _SMALL.format("shiftadd_supernet_tiny") + " --max-update 8 --valid-subnets smallest",
    "SEARCH_FLAGS": "--population 4 --parents 2 --mutations 1 --crossovers 1 --generations 2 --max-valid-sentences 64",
    "SUBNET_FLAGS": _SMALL.format("shiftadd_transformer") + " --max-epoch 2",
    "GENERATE_FLAGS": "--beam 1 --max-len-a 0 --max-len-b 8",
}
"""The environment that shrinks ``examples/pipeline.sh`` to a tiny scale (the per-stage flags it documents)."""


def check_pipeline_outputs(prepared: Path, work: Path, target_lang: str) -> None:
    """All four stages wrote their outputs: a best subnet of the tiny space, the average, every test sentence
    decoded and scored."""
    check(get_space("tiny"), SubnetConfig.load(work / "search" / "best.yaml"))
    assert (work / "subnet" / "checkpoint_avg_last1.pt").is_file()
    scores = (work / "bleu-test.txt").read_text()
    assert "sacreBLEU (detokenized)" in scores and "compound-split" in scores
    hypotheses = [line for line in (work / "generate-test.txt").read_text().splitlines() if line.startswith("D-")]
    assert len(hypotheses) == len((prepared / "raw" / f"test.{target_lang}").read_text().splitlines())


@pytest.mark.slow
def test_pipeline_runs_every_stage_at_a_tiny_scale(multi30k_en_de: Path, tmp_path: Path) -> None:
    """The WMT14 En-De recipe on the small Multi30k data, shrunk by the per-stage flags the script documents.

    Slow (CI runs it as its slow smoke, see .ci/run): the default suite runs each stage's tool on real data
    elsewhere (supernet training, export, generate: tests/test_supernet_task.py; search:
    tests/search/test_search_cli.py; averaging and scoring: tests/test_scoring_pipeline.py), and the script's
    argument checks in :func:`test_pipeline_rejects_unknown_dataset_and_stage`."""
    prepared, work = multi30k_en_de.parent, tmp_path / "work"
    result = subprocess.run(
        ["bash", str(EXAMPLES / "pipeline.sh"), "wmt14_en_de", str(prepared), str(work)],
        cwd=REPO, env={**os.environ, **TINY_PIPELINE}, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    check_pipeline_outputs(prepared, work, "de")


def test_pipeline_rejects_unknown_dataset_and_stage(tmp_path: Path) -> None:
    run = lambda *a: subprocess.run(["bash", str(EXAMPLES / "pipeline.sh"), *a], capture_output=True, text=True)
    unknown = run("wmt99", str(tmp_path), str(tmp_path / "w"))
    assert unknown.returncode == 2 and "unknown dataset 'wmt99'" in unknown.stderr
    (tmp_path / "data-bin").mkdir()
    stage = run("wmt14_en_de", str(tmp_path), str(tmp_path / "w"), "train")
    assert stage.returncode == 2 and "unknown stage 'train'" in stage.stderr
