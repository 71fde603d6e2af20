"""Console scripts that do not need fairseq answer ``--help`` and argument errors without importing it (fairseq's
import takes seconds and prints a tensorboardX notice); the plugin still registers when fairseq is imported later."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

REPO = Path(__file__).resolve().parents[1]
NEEDS_FAIRSEQ = {"fairseq-shiftadd-search", "fairseq-shiftadd-extract-subnet", "fairseq-shiftadd-average-checkpoints"}
"""The console scripts whose parsers or work are fairseq's (every other one must not import it to parse)."""


def _console_scripts() -> Dict[str, Tuple[str, str]]:
    """``{script: (module, function)}`` of setup.py's console scripts."""
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    return {name: (module, function)
            for name, module, function in re.findall(r'"(fairseq-shiftadd-[\w-]+) = ([\w.]+):(\w+)"', text)}


# one interpreter: each script's main with --help, then with an unknown option; fairseq must stay unimported
_CHECK = """
import importlib, sys
for name, module, function in {scripts!r}:
    main = getattr(importlib.import_module(module), function)
    for argv, status in ((["--help"], 0), (["--no-such-option"], 2)):
        try:
            main(argv)
        except SystemExit as exit:
            assert exit.code == status, (name, argv, exit.code)
        else:
            raise AssertionError((name, argv, "did not exit"))
        assert "fairseq" not in sys.modules, (name, argv, "imported fairseq")
import fairseq
from fairseq.models import MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY
assert "shiftadd_transformer" in MODEL_REGISTRY and "shiftadd_translation" in TASK_REGISTRY, "not registered"
print("checked", len({scripts!r}))
"""


def test_scripts_that_need_no_fairseq_parse_without_importing_it() -> None:
    scripts = _console_scripts()
    assert NEEDS_FAIRSEQ < set(scripts), "a script of NEEDS_FAIRSEQ left setup.py"
    light = [(name, *scripts[name]) for name in sorted(set(scripts) - NEEDS_FAIRSEQ)]
    assert {"fairseq-shiftadd-cost", "fairseq-shiftadd-score", "fairseq-shiftadd-prepare-multi30k",
            "fairseq-shiftadd-latency-dataset"} <= {name for name, _, _ in light}
    result = subprocess.run([sys.executable, "-c", _CHECK.format(scripts=light)], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(f"checked {len(light)}")

