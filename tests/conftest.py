"""Shared fixtures: the real Multi30k data, prepared once per test session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Console scripts (fairseq-train, fairseq-shiftadd-*) live beside the interpreter running the tests,
# whether or not its environment is activated.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
MULTI30K = Path(os.environ.get("MULTI30K_DIR", REPO.parent / "shared" / "data" / "multi30k"))


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """The raw Multi30k directory (``../shared/data/multi30k``, or ``$MULTI30K_DIR``)."""
    if not (MULTI30K / "train.en.gz").is_file():
        pytest.fail(f"Multi30k not found at {MULTI30K}: set MULTI30K_DIR")
    return MULTI30K


@pytest.fixture(scope="session")
def multi30k_en_de(multi30k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small prepared Multi30k En-De: 1000-piece sentencepiece vocabulary, first 10k training pairs."""
    from fairseq_shiftadd.prep import multi30k

    out = tmp_path_factory.mktemp("multi30k_en_de")
    return multi30k.prepare(multi30k_dir, out, "en-de", vocab_size=1000, max_train=10_000)
