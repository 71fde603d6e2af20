"""A tiny supernet trained on Multi30k En-De, once per test session, for the search tests."""
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_cli(*cmd: str, timeout: int = 600) -> str:
    """Run a console script from the repository root; fail with its stderr; return stdout + stderr."""
    exe = shutil.which(cmd[0])
    assert exe is not None, f"{cmd[0]} is not installed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process: far faster on a shared CPU
    result = subprocess.run([exe, *cmd[1:]], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., str]:
    """``run_cli("fairseq-...", *args)``: run a console script from the repository root, return its output."""
    return _run_cli


@pytest.fixture(scope="session")
def tiny_supernet(multi30k_en_de: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``checkpoint_last.pt`` of the tiny supernet after 100 updates (sampled subnets, heterogeneous sharing)."""
    save_dir = tmp_path_factory.mktemp("search_supernet")
    _run_cli(
        "fairseq-train", str(multi30k_en_de), "--user-dir", "fairseq_shiftadd",
        "--task", "shiftadd_translation", "--arch", "shiftadd_supernet_tiny", "--sharing", "heterogeneous",
        "--criterion", "shiftadd_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "30", "--max-tokens", "1024", "--max-update", "100", "--disable-validation",
        "--no-epoch-checkpoints", "--save-interval-updates", "100", "--save-dir", str(save_dir),
        "--log-format", "simple", "--seed", "1", "--num-workers", "0",
    )
    checkpoint = save_dir / "checkpoint_last.pt"
    assert checkpoint.is_file()
    return checkpoint
