"""The operator and decoding benchmarks run end to end at tiny sizes (their figures are not checked here: timings
are no test's business on a shared machine), and print a row per case they were asked for."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_operator_benchmark_step_rows(capsys, monkeypatch):
    ops = _benchmark("ops")
    monkeypatch.setattr(ops, "_pin_allocator", lambda: False)  # glibc's thresholds stay as the other tests had them
    ops.main(["--quick", "--repeat", "1", "--skip-memory", "--only", "step"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "step" in line]
    names = {row.split(" | ")[0].lstrip("| ") for row in rows}
    assert {"ShiftLinear (ps) step", "ShiftLinear (q) step", "AddLinear step", "LightweightShiftAdd step"} <= names


def test_decoding_benchmark_with_each_ffn_operator(capsys):
    _benchmark("supernet").main(["--decode", "--space", "tiny", "--beam", "2", "--steps", "1", "--vocab", "100",
                                 "--ffn-ops", "mult", "shift", "add"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "ms" not in line]
    assert sum(f"{op} FFNs" in row for row in rows for op in ("mult", "shift", "add")) == 3


def test_operator_benchmark_mixer_sweep_covers_every_length_and_kernel_size(capsys, monkeypatch):
    ops = _benchmark("ops")
    monkeypatch.setattr(ops, "_pin_allocator", lambda: False)
    monkeypatch.setitem(ops.MIXER_SWEEP, "tokens", 256)  # tiny batches: the shapes, not the figures, are checked here
    monkeypatch.setitem(ops.MIXER_SWEEP, "channels", 16)
    ops.main(["--mixers", "--repeat", "1", "--skip-memory"])
    rows = [line.split(" | ")[:2] for line in capsys.readouterr().out.splitlines() if line.startswith("| Lightweight")]
    sweep = ops.MIXER_SWEEP
    expected = {(f"| {mixer} vs fairseq (band)", f"T{t} B{256 // t} C16 K{k}") for t in sweep["lengths"]
                for k in sweep["kernel_sizes"] for mixer in ("LightweightConv", "LightweightAdd")}
    assert {tuple(row) for row in rows} == expected
