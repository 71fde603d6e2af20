"""The operator and decoding benchmarks run end to end at tiny sizes (their figures are not checked here: timings
are no test's business on a shared machine), and print a row per case they were asked for."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

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


def test_ops_summary_reads_real_runs_and_reports_median_and_range(capsys, monkeypatch, tmp_path):
    ops, summary = _benchmark("ops"), _benchmark("ops_summary")
    monkeypatch.setattr(ops, "_pin_allocator", lambda: False)
    ops.main(["--quick", "--repeat", "1", "--skip-memory", "--only", "AddLinear step"])
    (tmp_path / "real.txt").write_text(capsys.readouterr().out)
    real = summary.read_run(tmp_path / "real.txt")
    assert {name for name, _ in real} == {"AddLinear step"} and len(real) == 2  # the plain table, not its copy

    def run(path, forward, training):
        path.write_text("torch ...\noperator | shape | fwd ms | fwd vs torch | fwd+bwd ms | fwd+bwd vs torch | peak MiB"
                        f" | peak vs torch\nAddLinear | 8x4->2 | 1.00 | {forward} | 2.00 | {training} | n/a | n/a\n")
        return path

    runs = [run(tmp_path / f"run{i}.txt", forward, "n/a") for i, forward in enumerate(["0.90x", "1.30x", "1.00x"])]
    summary.main([str(path) for path in runs] + ["--reference", str(run(tmp_path / "ref.txt", "7.00x", "6.50x"))])
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "| AddLinear | 8x4->2 | 1.00x (0.90-1.30) | n/a | 7.00x | 6.50x |"
    (tmp_path / "other.txt").write_text((tmp_path / "run0.txt").read_text().replace("AddLinear", "AddConv2d"))
    with pytest.raises(SystemExit, match="'AddLinear 8x4->2' is missing from run\\(s\\) \\[2\\]"):
        summary.main([str(runs[0]), str(tmp_path / "other.txt")])
