"""GPU throughput of the adder layer (AdderNet's negative L1 "matmul") against torch.cdist(p=1) and a matmul.

Times :func:`~fairseq_shiftadd.ops.adder.add_matmul` (the Triton kernels on CUDA; ``--reference`` forces the tiled
PyTorch path) at one shape, in each input dtype, in T op/s: an op is one ``|x - w|`` term, and a whole training
step (forward and backward) counts ``N * M * K`` ops, as the issue's baseline does (``torch.cdist`` measured
0.33 T op/s forward and 0.11 T forward+backward at N=8192, K=512, M=2048 on an H200). Every baseline is measured
in the same run: ``torch.cdist(x, w, p=1)`` (float32 only; its backward materialises an ``N x M x K`` tensor and
may run out of memory), and ``x @ w.T`` of the same shape and dtype (``nn.Linear`` without bias; float32 matmuls
without TF32). Rows ``forward kernel`` / ``dx kernel`` time the two Triton kernels alone (with the wrappers' float32
staging), and the tiles the autotuner chose are printed last. Times are medians of
``triton.testing.do_bench`` (CUDA events); peak memory is the CUDA allocator's peak growth over one step.

    python benchmarks/gpu_adder.py                      # N=8192, K=512, M=2048
    python benchmarks/gpu_adder.py --n 4096 --k 1024 --m 4096 --dtypes float32
"""
from __future__ import annotations

import argparse
import os
from typing import Callable, List, Optional, Sequence

import torch

from fairseq_shiftadd.ops.adder import add_matmul
from fairseq_shiftadd.ops.kernels import triton_adder

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _median_ms(fn: Callable[[], object]) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))


def _peak_mib(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _row(name: str, dtype: str, ms: Optional[float], ops: float, base_ms: Optional[float],
         peak: Optional[float] = None) -> List[str]:
    if ms is None:
        return [name, dtype, "OOM", "n/a", "n/a", "n/a"]
    ratio = "n/a" if base_ms is None else f"{ms / base_ms:.2f}x"
    return [name, dtype, f"{ms:.3f}", f"{ops / ms / 1e9:.2f}", ratio, "n/a" if peak is None else f"{peak:.0f}"]


def _or_oom(fn: Callable[[], float]) -> Optional[float]:
    try:
        return fn()
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def run(n: int, k: int, m: int, dtypes: Sequence[str]) -> List[List[str]]:
    """The table's rows (see the module docstring), printed as they come."""
    torch.backends.cuda.matmul.allow_tf32 = False
    ops = float(n) * m * k
    rows = []

    def emit(row: List[str]) -> None:
        rows.append(row)
        print(" | ".join(row), flush=True)

    torch.manual_seed(0)
    x32, w32 = torch.randn(1, n, k, device="cuda"), torch.randn(1, m, k, device="cuda")  # (G, N, K), (G, M, K)
    cdist = _or_oom(lambda: _median_ms(lambda: torch.cdist(x32, w32, p=1)))
    emit(_row("torch.cdist p=1 forward", "float32", cdist, ops, None))
    xg, wg = x32.clone().requires_grad_(), w32.clone().requires_grad_()
    cdist_step = _or_oom(lambda: _median_ms(lambda: torch.cdist(xg, wg, p=1).sum().backward()))
    emit(_row("torch.cdist p=1 fwd+bwd", "float32", cdist_step, ops, None))
    for name in dtypes:
        dtype = DTYPES[name]
        x, w = x32.to(dtype), w32.to(dtype)
        g = torch.randn(1, n, m, device="cuda").to(dtype)
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        matmul = _median_ms(lambda: x @ w.transpose(1, 2))
        emit(_row("x @ w^T (matmul)", name, matmul, ops, None))

        def step() -> None:
            xg.grad = wg.grad = None
            add_matmul(xg, wg).backward(g)

        forward = _median_ms(lambda: add_matmul(x, w))
        emit(_row("add_matmul forward", name, forward, ops, cdist if name == "float32" else None))
        emit(_row("add_matmul forward vs matmul", name, forward, ops, matmul))
        train = _median_ms(step)
        emit(_row("add_matmul fwd+bwd", name, train, ops, cdist_step if name == "float32" else None, _peak_mib(step)))
        if triton_adder.triton_supported(x, w) and "FAIRSEQ_SHIFTADD_KERNELS" not in os.environ:
            emit(_row("  forward kernel", name, _median_ms(lambda: triton_adder.neg_l1(x, w, False)), ops, None))
            emit(_row("  forward kernel (centred)", name,
                      _median_ms(lambda: triton_adder.neg_l1(x, w, True)), ops, None))
            emit(_row("  dx kernel", name, _median_ms(lambda: triton_adder.input_grad(g, x, w)), ops, None))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8192, help="rows of x (tokens)")
    parser.add_argument("--k", type=int, default=512, help="input width")
    parser.add_argument("--m", type=int, default=2048, help="output width (rows of w)")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--reference", action="store_true",
                        help="time the reference PyTorch path (FAIRSEQ_SHIFTADD_KERNELS=reference), not the kernels")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    if args.reference:
        os.environ["FAIRSEQ_SHIFTADD_KERNELS"] = "reference"
    header = ["what", "dtype", "ms", "T op/s", "vs baseline", "peak MiB"]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, N={args.n} K={args.k} M={args.m}, "
          f"{'reference path' if args.reference else 'Triton kernels'}; baseline: cdist (float32) or the matmul row")
    print(" | ".join(header))
    rows = run(args.n, args.k, args.m, args.dtypes)
    print("\nMarkdown:\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if not args.reference:
        for name, kernel in triton_adder.kernels().items():
            print(f"{name} tiles chosen: " + "; ".join(f"{key}: {config}" for key, config in kernel.cache.items()))


if __name__ == "__main__":
    main()
