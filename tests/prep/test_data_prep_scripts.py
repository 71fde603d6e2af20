"""``data_prep/*.sh``: without arguments each prints its usage and exits 2 (it said ``$1: unbound variable``)."""
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (REPO / "data_prep").glob("*.sh"))


def test_every_dataset_has_a_script() -> None:
    assert SCRIPTS == ["iwslt14_de_en.sh", "multi30k.sh", "wmt14_en_de.sh", "wmt14_en_fr.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("args", [[], ["--help"]])
def test_usage_without_arguments(script: str, args: list) -> None:
    result = subprocess.run(["bash", f"data_prep/{script}", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert f"usage: bash data_prep/{script} OUT_DIR" in result.stderr
    assert "unbound variable" not in result.stderr
