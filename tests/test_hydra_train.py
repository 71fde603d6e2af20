"""``fairseq-hydra-train`` trains from a shipped recipe config (README "Training with Hydra")."""
import subprocess
from pathlib import Path

import pytest

from test_readme import bash_lines

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_hydra_train_runs_the_supernet(multi30k_en_de: Path, tmp_path: Path) -> None:
    config = REPO / "examples" / "multi30k_en_de" / "supernet.yaml"
    (line,) = bash_lines("Training with Hydra")
    line = line.replace("PREPARED", str(multi30k_en_de.parent)).replace("SAVE_DIR", str(tmp_path / "save"))
    result = subprocess.run(["bash", "-c", line + " optimization.max_update=2 dataset.max_valid_steps=1"],
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert config.is_file() and (tmp_path / "save" / "checkpoint_last.pt").is_file()
    assert "loss_largest" in result.stdout + result.stderr  # the supernet task validated its subnet
