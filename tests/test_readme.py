"""README.md as a newcomer reads it: its flags table is complete, and its commands run as written (tiny scale).

Placeholders are filled in (``PREPARED``, ``CKPT``, ``SPACE``, the supernet and search outputs) and only the
scale is changed: fewer updates and shorter decodes.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterionConfig
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks.translation import TranslationConfig

from fairseq_shiftadd.registry import CRITERIONS, MODELS, TASKS
from fairseq_shiftadd.space import get_space, smallest

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


@pytest.mark.slow
def test_using_a_trained_model_commands_run(finetuned: Dict[str, str], multi30k_en_de: Path) -> None:
    work = Path(finetuned.pop("work"))
    generate, validate, interactive = bash_lines("Using a trained model")
    short = {**finetuned, "--beam 4": "--beam 2 --max-len-b 5"}
    _run(generate, short, work)
    decoded = [line for line in (work / "gen.txt").read_text().splitlines() if line.startswith("H-")]
    assert len(decoded) == len((multi30k_en_de.parent / "raw" / "test.de").read_text().splitlines())
    assert "valid on 'test' subset" in _run(validate + " 2>&1", finetuned, work)
    out = _run(interactive, short, work)
    assert re.search(r"^S-0\t▁A ▁man", out, re.M) and re.search(r"^D-0\t", out, re.M)
    assert "<unk>" not in re.search(r"^S-0\t(.*)$", out, re.M).group(1)
