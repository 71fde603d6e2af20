"""Cost of the models' adder form against AdderNet's plain form: ``add_matmul`` forward + backward on one thread.

Plain: ``centre_outputs=False`` with AdderNet's gradient scale (``AddLinear``'s default); centred: the add FFNs'
``centre_outputs=True`` with the mult-matched scale. LayerNorm-ed inputs, Xavier-scale weights. Prints the
median of ``--repeats`` runs of each, interleaved, and their ratio.

    python benchmarks/add_centred_cost.py [--rows 1024] [--length 512] [--outputs 2048] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Sequence

import torch
import torch.nn.functional as F

from fairseq_shiftadd.ops.adder import GradNorm, add_matmul


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1024, help="N")
    parser.add_argument("--length", type=int, default=512, help="K")
    parser.add_argument("--outputs", type=int, default=2048, help="M")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = F.layer_norm(torch.randn(1, args.rows, args.length), (args.length,)).requires_grad_()
    w = (torch.randn(1, args.outputs, args.length) * 0.05).requires_grad_()
    g = torch.randn(1, args.rows, args.outputs)
    forms = {"plain": (False, GradNorm.ADDERNET), "centred": (True, GradNorm.MULT)}
    seconds = {name: [] for name in forms}
    for _ in range(args.repeats):
        for name, (centre, norm) in forms.items():
            start = time.perf_counter()
            add_matmul(x, w, centre_outputs=centre, grad_norm=norm).backward(g)
            seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"N={args.rows} K={args.length} M={args.outputs}: plain {median['plain']:.3f} s, "
          f"centred {median['centred']:.3f} s, ratio {median['centred'] / median['plain']:.2f}")


if __name__ == "__main__":
    main()
