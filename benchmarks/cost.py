"""Cost-model throughput: ``CostModel.metrics`` and ``report`` on fresh random subnets (configs per second).

The search calls ``metrics`` on every candidate, so it must never be the bottleneck (target: >= 10,000
configs/s for energy). Every timed subnet is a new sample (never repeated); "cold" starts from a new
CostModel (empty component caches), "warm" uses one that has already costed other subnets.

    python benchmarks/cost.py [--space wmt14_en_de] [--n 20000]
"""
from __future__ import annotations

import argparse
import random
import time
from typing import Callable, List, Sequence, Tuple

from fairseq_shiftadd.cost import CostModel
from fairseq_shiftadd.space import SubnetConfig, get_space, sample

TARGET = 10_000


def _rate(fn: Callable[[SubnetConfig], object], subs: List[SubnetConfig]) -> Tuple[float, float]:
    """Configs per second of wall time and of this process's CPU time (robust on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for sub in subs:
        fn(sub)
    return len(subs) / (time.perf_counter() - wall), len(subs) / (time.process_time() - cpu)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="wmt14_en_de")
    parser.add_argument("--n", type=int, default=20_000, help="subnets per measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    space = get_space(args.space)
    rng = random.Random(args.seed)
    fresh = lambda n: [sample(space, rng) for _ in range(n)]  # noqa: E731
    cold = CostModel(space)
    rows = [("metrics, cold model", _rate(cold.metrics, fresh(args.n)))]
    rows.append(("metrics, warm model", _rate(cold.metrics, fresh(args.n))))
    rows.append(("report, warm model", _rate(cold.report, fresh(max(args.n // 10, 1)))))
    print(f"| {args.space}: {args.n} fresh subnets per row | configs/s (wall) | configs/s (CPU) "
          f"| CPU / target {TARGET:,} |")
    print("|---|---|---|---|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:,.0f} | {cpu:,.0f} | {cpu / TARGET:.2f} |")


if __name__ == "__main__":
    main()
