"""Shared fixtures: the real Multi30k data prepared, and a tiny supernet trained on it, once per test session."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
# Console scripts (fairseq-train, fairseq-shiftadd-*) live beside the interpreter running the tests,
# whether or not its environment is activated.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
MULTI30K = Path(os.environ.get("MULTI30K_DIR", REPO.parent / "shared" / "data" / "multi30k"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n``), give each worker its share of the cores, in process and in its children.

    Two workers each running PyTorch's default (every core) oversubscribe the machine: the suite then takes as long
    as one process, and timing-based fixtures (the latency measurements) take many times longer.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # as xdist
        threads = max(1, cpus // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """The raw Multi30k directory (``../shared/data/multi30k``, or ``$MULTI30K_DIR``)."""
    if not (MULTI30K / "train.en.gz").is_file():
        pytest.fail(f"Multi30k not found at {MULTI30K}: set MULTI30K_DIR")
    return MULTI30K


def _once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]) -> Path:
    """``make(folder)``'s result, made once per test run. Under pytest-xdist the first worker to ask makes it in a
    folder of the run's temporary root, which all its workers share, while the others wait for it (a file lock) and
    then reuse it: they would otherwise each make the same thing, on the cores the first one needs. Without xdist, in
    the session's temporary folder. What is made this way is only read by the tests."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return make(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent  # this run's: the workers' own folders are in it
    folder, made = root / name, root / f"{name}.made"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when make raises
        if not made.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed halfway left
            folder.mkdir()
            made.write_text(str(make(folder)))
        return Path(made.read_text())


@pytest.fixture(scope="session")
def multi30k_en_de(multi30k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small prepared Multi30k En-De: 1000-piece sentencepiece vocabulary, first 10k training pairs."""
    from fairseq_shiftadd.prep import multi30k

    return _once_per_run(tmp_path_factory, "multi30k_en_de", lambda out: multi30k.prepare(
        multi30k_dir, out, "en-de", vocab_size=1000, max_train=10_000))


def _run_cli(*cmd: str, timeout: int = 1200) -> str:
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
def trained_supernet(multi30k_en_de: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The save directory of the tiny supernet trained once per session by ``fairseq-train`` (the default suite's
    real end-to-end training run): 180 updates of sampled subnets, heterogeneous sharing, validated (largest and
    smallest subnet) every 60 updates. It holds ``checkpoint_best.pt``, ``checkpoint_last.pt`` and ``valid.json``
    (the logged validation records, in order). Trained once per run (:func:`_once_per_run`)."""
    return _once_per_run(tmp_path_factory, "supernet", lambda save_dir: _train_supernet(multi30k_en_de, save_dir))


def _train_supernet(multi30k_en_de: Path, save_dir: Path) -> Path:
    log = _run_cli(
        "fairseq-train", str(multi30k_en_de), "--user-dir", "fairseq_shiftadd",
        "--task", "shiftadd_translation", "--arch", "shiftadd_supernet_tiny", "--sharing", "heterogeneous",
        "--criterion", "shiftadd_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "40", "--max-tokens", "1024", "--max-update", "180",
        "--validate-interval-updates", "60", "--save-interval-updates", "60", "--keep-interval-updates", "1",
        "--no-epoch-checkpoints", "--max-valid-steps", "4", "--save-dir", str(save_dir), "--log-format", "json",
        "--log-interval", "50", "--seed", "1", "--num-workers", "0",
    )
    valid = [json.loads(m) for m in re.findall(r"\| valid \| .*?(\{.*\})", log)]
    (save_dir / "valid.json").write_text(json.dumps(valid))
    assert (save_dir / "checkpoint_last.pt").is_file() and (save_dir / "checkpoint_best.pt").is_file()
    return save_dir


@pytest.fixture(scope="session")
def tiny_supernet(trained_supernet: Path) -> Path:
    """``checkpoint_last.pt`` of the session's tiny supernet (:func:`trained_supernet`)."""
    return trained_supernet / "checkpoint_last.pt"
