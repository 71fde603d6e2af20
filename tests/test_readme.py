"""README.md as a newcomer reads it: its flags table is complete, and every command of its ```bash blocks is run,
as written, by a test here or elsewhere (``RUN_BY``), by the demo or by CI.

Placeholders are filled in (``PREPARED``, ``DATA``, ``CKPT``, ``SPACE``, the supernet and search outputs) and only
the scale is changed: fewer updates, samples and candidates, shorter decodes. ``[optional]`` parts are run
without them, and each on its own where that is cheap.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterionConfig
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks.translation import TranslationConfig

from fairseq_shiftadd.registry import CRITERIONS, MODELS, TASKS
from fairseq_shiftadd.scoring import ScoreReport
from fairseq_shiftadd.ops.kinds import OpKind
from fairseq_shiftadd.space import SubnetConfig, check, get_space, largest, smallest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the README section ``### title`` (up to the next heading)."""
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#)", README, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def bash_lines(title: str) -> List[str]:
    """The commands of the first ```bash block of a section."""
    block = re.search(r"```bash\n(.*?)```", section(title), re.S)
    assert block, f"section {title!r} has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def readme_commands() -> List[Tuple[str, str]]:
    """Every command of the README's ```bash blocks as (section, command): continuations joined, comments cut."""
    commands, title = [], ""
    for match in re.finditer(r"^#+ ([^\n]*)$|^```bash\n(.*?)^```", README, re.S | re.M):
        if match.group(1) is not None:
            title = match.group(1)
            continue
        for line in re.sub(r"\\\n\s*", "", match.group(2)).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                commands.append((title, line))
    return commands


def without_options(command: str) -> str:
    """``command`` without its ``[optional]`` parts."""
    return re.sub(r"\s*\[[^\[\]]*\]", "", command)


def options(command: str) -> List[str]:
    """The ``[optional]`` parts of ``command`` (the first of ``a|b`` alternatives)."""
    return [part.split("|")[0].strip() for part in re.findall(r"\[([^\[\]]*)\]", command)]


RUN_BY = {
    "bash scripts/demo.sh": "scripts/demo.sh",  # the demo itself
    "bash scripts/test.sh": ".ci/run",  # CI runs exactly this
    "pip install": "scripts/install.sh",  # the same three installs, run by scripts/demo.sh and scripts/test.sh
    "fairseq-generate PREPARED/data-bin": "tests/test_readme.py::test_using_a_trained_model_commands_run",
    "fairseq-validate": "tests/test_readme.py::test_using_a_trained_model_commands_run",
    'echo "A man rides a bike." | fairseq-interactive': "tests/test_readme.py::test_using_a_trained_model_commands_run",
    "fairseq-shiftadd-extract-subnet": "tests/test_readme.py::finetuned",
    "fairseq-train PREPARED/data-bin": "tests/test_readme.py::finetuned",
    "fairseq-hydra-train": "tests/test_hydra_train.py::test_hydra_train_runs_the_supernet",
    "fairseq-shiftadd-cost": "tests/test_readme.py::test_cost_command_runs_as_written",
    "fairseq-shiftadd-latency-dataset": "tests/test_readme.py::test_latency_commands_run_as_written",
    "fairseq-shiftadd-train-latency-predictor": "tests/test_readme.py::test_latency_commands_run_as_written",
    "fairseq-shiftadd-search": "tests/test_readme.py::test_search_command_runs_as_written",
    "fairseq-shiftadd-rerank": "tests/test_readme.py::test_rerank_command_runs_as_written",
    "fairseq-generate DATA": "tests/test_readme.py::test_decode_and_score_commands_run_as_written",
    "fairseq-shiftadd-score": "tests/test_readme.py::test_decode_and_score_commands_run_as_written",
    "bash data_prep/wmt14_en_de.sh": "tests/prep/test_readme_recipe.py::test_recipes_block_runs_as_written",
    "bash examples/pipeline.sh": "tests/prep/test_readme_recipe.py::test_recipes_block_runs_as_written",
}
"""What runs each README command (by its start)."""


def test_every_readme_command_is_run_by_a_test_the_demo_or_ci() -> None:
    commands = readme_commands()
    assert len(commands) >= 17
    for title, command in commands:
        runners = [runner for start, runner in RUN_BY.items() if command.startswith(start)]
        assert len(runners) == 1, f"README {title!r}: nothing (or several) in RUN_BY runs {command!r}"
        path, _, name = runners[0].partition("::")
        assert (REPO / path).is_file(), runners[0]
        if name:
            assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), runners[0]
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()
    assert "scripts/install.sh" in (REPO / "scripts" / "demo.sh").read_text()


def test_cost_command_runs_as_written() -> None:
    """The cost block's command: as written via the console script, then with each option (in-process)."""
    from fairseq_shiftadd.cost.cli import main

    (command,) = [c for _, c in readme_commands() if c.startswith("fairseq-shiftadd-cost")]
    assert re.search(r"^total: energy [\d.]+ mJ", _run(without_options(command), {}, REPO), re.M)
    for option in options(command):
        assert main(shlex.split(without_options(command))[1:] + shlex.split(option)) in (0, None), option


def _own_fields(config: type, base: type) -> List[str]:
    inherited = {f.name for f in dataclasses.fields(base)}
    return [f.name for f in dataclasses.fields(config) if f.name not in inherited and not f.name.startswith("_")
            and not (isinstance(f.default, str) and f.default.startswith("${"))]  # II(...) mirrors add no flag


def test_flags_table_lists_every_plugin_flag() -> None:
    table = section("The plugin's own training flags")
    names = [n for _, dc in TASKS.values() for n in _own_fields(dc, TranslationConfig)]
    names += [n for _, dc in MODELS.values() for n in _own_fields(dc, FairseqDataclass)]
    names += [n for _, dc in CRITERIONS.values() for n in _own_fields(dc, LabelSmoothedCrossEntropyCriterionConfig)]
    missing = sorted({n for n in names if f"`--{n.replace('_', '-')}" not in table})
    assert not missing, f"README's flag table lacks {missing}"


def test_workflow_search_command_has_batching() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| search |"))
    assert "--max-tokens" in row


def _run(line: str, values: Dict[str, str], cwd: Path) -> str:
    for name, value in values.items():
        line = line.replace(name, value)
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {line}"], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def finetuned(multi30k_en_de: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """README's fine-tuning recipe, run from a 2-update tiny supernet and a best.yaml."""
    work = tmp_path_factory.mktemp("readme")
    (work / "search").mkdir()
    smallest(get_space("tiny")).save(work / "search" / "best.yaml")
    subprocess.run(
        ["fairseq-train", str(multi30k_en_de), "--user-dir", str(REPO / "fairseq_shiftadd"), "--task",
         "shiftadd_translation", "--arch", "shiftadd_supernet_tiny", "--optimizer", "adam", "--lr", "1e-3",
         "--max-tokens", "1024", "--max-update", "2", "--save-dir", str(work / "supernet"), "--num-workers", "0",
         "--max-valid-steps", "1", "--no-epoch-checkpoints"],
        check=True, capture_output=True, cwd=REPO,
    )
    values = {"PREPARED": str(multi30k_en_de.parent), "SPACE": "tiny", "--max-update 1000": "--max-update 2",
              "--user-dir fairseq_shiftadd": f"--user-dir {REPO / 'fairseq_shiftadd'}"}
    lines = bash_lines("Fine-tuning an exported subnet")
    assert "--reset-optimizer --reset-lr-scheduler --reset-meters --reset-dataloader" in lines[1]
    for line in lines:
        _run(line, values, work)
    return {**values, "CKPT": str(work / "finetune" / "checkpoint_best.pt"), "work": str(work)}


def _placeholders(finetuned: Dict[str, str]) -> Dict[str, str]:
    """The fixture's placeholder values (without its working directory)."""
    return {name: value for name, value in finetuned.items() if name != "work"}


@pytest.mark.slow
def test_using_a_trained_model_commands_run(finetuned: Dict[str, str], multi30k_en_de: Path) -> None:
    work = Path(finetuned["work"])
    finetuned = _placeholders(finetuned)
    generate, validate, interactive = bash_lines("Using a trained model")
    short = {**finetuned, "--beam 4": "--beam 2 --max-len-b 5"}
    _run(generate, short, work)
    decoded = [line for line in (work / "gen.txt").read_text().splitlines() if line.startswith("H-")]
    assert len(decoded) == len((multi30k_en_de.parent / "raw" / "test.de").read_text().splitlines())
    assert "valid on 'test' subset" in _run(validate + " 2>&1", finetuned, work)
    out = _run(interactive, short, work)
    assert re.search(r"^S-0\t▁A ▁man", out, re.M) and re.search(r"^D-0\t", out, re.M)
    assert "<unk>" not in re.search(r"^S-0\t(.*)$", out, re.M).group(1)


@pytest.mark.slow
def test_latency_commands_run_as_written(tmp_path: Path) -> None:
    commands = [c for _, c in readme_commands() if c.startswith("fairseq-shiftadd-latency-dataset")
                or c.startswith("fairseq-shiftadd-train-latency-predictor")]
    assert len(commands) == 2
    tiny = {"--samples 300": "--samples 24 --runs 2 --warmup 0 --src-len 4 --tgt-len 3"}
    for command in commands:
        out = _run(without_options(command), tiny, tmp_path)
    assert len((tmp_path / "lat.csv").read_text().splitlines()) > 24
    assert (tmp_path / "predictor.pt").is_file() and "MAPE" in out


@pytest.mark.slow
def test_search_command_runs_as_written(finetuned: Dict[str, str], multi30k_en_de: Path) -> None:
    (command,) = [c for _, c in readme_commands() if c.startswith("fairseq-shiftadd-search")]
    command = without_options(command) + (" --population 4 --parents 2 --mutations 1 --crossovers 1"
                                          " --generations 1 --max-valid-sentences 20")
    values = {**_placeholders(finetuned), "DATA": str(multi30k_en_de),
              "--save-dir search": "--save-dir search_readme"}  # search/ holds the fixture's best.yaml
    _run(command, values, Path(finetuned["work"]))
    best = SubnetConfig.load(Path(finetuned["work"]) / "search_readme" / "best.yaml")
    check(get_space("tiny"), best)


@pytest.mark.slow
def test_rerank_command_runs_as_written(multi30k_en_de: Path, tmp_path: Path) -> None:
    """The rerank command on a stand-in search of two demo subnets (+ one included), 2 updates each."""
    from test_rerank import search_dir

    from fairseq_shiftadd.search.rerank import trained_loss

    (command,) = [c for _, c in readme_commands() if c.startswith("fairseq-shiftadd-rerank")]
    demo = get_space("demo")
    search_dir(tmp_path, [(True, 6.0, smallest(demo)), (True, 6.2, largest(demo))])
    (tmp_path / "search_attention").mkdir()
    largest(demo, ffn_op=OpKind.SHIFT).save(tmp_path / "search_attention" / "best.yaml")
    values = {"DATA": str(multi30k_en_de), "--updates 136": "--updates 2", "--search-dir search":
              f"--search-dir {tmp_path}/search", "--save-dir rerank": f"--save-dir {tmp_path}/rerank",
              "search_attention/": f"{tmp_path}/search_attention/",
              "--max-tokens 4096": "--max-tokens 1024 --max-valid-steps 2"}
    command = without_options(command) + " " + " ".join(options(command))
    printed = _run(f"OMP_NUM_THREADS=1 {command}", values, REPO)  # from the repository root, as the recipes run
    assert printed.count("rerank loss") == 3 and printed.strip().endswith("best.yaml")
    losses = [trained_loss(tmp_path / "rerank" / d) for d in ("00", "01", "02")]
    assert all(0 < loss < 20 for loss in losses)
    assert f"# rerank_loss: {min(losses)}" in (tmp_path / "rerank" / "best.yaml").read_text()


@pytest.mark.slow
def test_decode_and_score_commands_run_as_written(finetuned: Dict[str, str], multi30k_en_de: Path,
                                                  tmp_path: Path) -> None:
    generate, score = [c for title, c in readme_commands() if title == "Scoring (`fairseq-shiftadd-score`)"]
    values = {**_placeholders(finetuned), "DATA": str(multi30k_en_de), "--beam 4": "--beam 2 --max-len-b 5"}
    _run(generate, values, tmp_path)
    labelled = _run(without_options(score), values, tmp_path)
    scores = json.loads(_run(without_options(score) + " " + " ".join(options(score)), values, tmp_path))
    for line in ScoreReport(**scores).lines():  # the JSON and the labelled lines report the same scores
        assert line in labelled
