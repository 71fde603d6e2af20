"""The README's "Recipes" block as written, at a tiny scale: ``data_prep/wmt14_en_de.sh`` on fake WMT14 En-De
archives placed in ``OUT/downloads`` by hand (as its usage says; the real ones are 1.5 GB), then
``examples/pipeline.sh`` through all four stages, shrunk by the per-stage flags it documents."""
import os
import subprocess
from pathlib import Path

import pytest
from test_examples import TINY_PIPELINE, check_pipeline_outputs
from test_readme import bash_lines
from test_wmt14 import make_wmt14

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_recipes_block_runs_as_written(tmp_path: Path) -> None:
    prepare, pipeline = bash_lines("Recipes (`examples/`)")
    paths = {"data/wmt14_en_de": str(tmp_path / "data" / "wmt14_en_de"),
             "work/wmt14_en_de": str(tmp_path / "work" / "wmt14_en_de")}
    for name, path in paths.items():
        prepare, pipeline = prepare.replace(name, path), pipeline.replace(name, path)
    make_wmt14(tmp_path / "data" / "wmt14_en_de" / "downloads", "en-de")
    env = {**os.environ, **TINY_PIPELINE}
    for command in (prepare + " 150 1", pipeline):  # VOCAB_SIZE 150 and 1 worker: the fakes are small
        result = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    check_pipeline_outputs(tmp_path / "data" / "wmt14_en_de", tmp_path / "work" / "wmt14_en_de", "de")
