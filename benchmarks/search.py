"""Search throughput: evaluated candidates per minute of the evolutionary search on a tiny supernet (CPU).

Runs the search engine with the real fitness (validation loss with inherited weights on the first
``--sentences`` Multi30k validation sentences) and reports evaluated candidates per minute, the share of the
time spent in the fitness, and the engine alone (cost metrics, breeding, rejection sampling, selection; a
zero-cost fitness) in candidates per minute, for the same settings. The load average is printed: other jobs
on the machine slow the fitness.

``--seeding SPACE`` measures instead how generation 0 is filled under ever tighter energy constraints (no
supernet: the cost model and a zero-cost fitness): for bounds at quantiles of the energy of uniform draws, the
draws, the acceptance rate, the members found by the repair walk and the seconds, next to the draws that pure
rejection sampling would need on average (population / acceptance of uniform draws).

    python benchmarks/search.py --path SUPERNET.pt --data DATA_BIN [--sentences 200] [--generations 3]
    python benchmarks/search.py            # prepares Multi30k and trains a tiny supernet (100 updates) first
    python benchmarks/search.py --seeding wmt14_en_de
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence, Tuple

from fairseq_shiftadd.cost import CostModel, Workload
from fairseq_shiftadd.search import EvolutionarySearch, EvolutionConfig, TranslationDomain, parse_constraint
from fairseq_shiftadd.search.metrics import SEARCH_METRICS, cost_metrics
from fairseq_shiftadd.search.fitness import ValidationFitness
from fairseq_shiftadd.space import SubnetConfig, get_space, sample

REPO = Path(__file__).resolve().parents[1]


def _tiny_supernet(work: Path) -> Tuple[Path, Path]:
    """Prepare Multi30k En-De (1000 pieces, 10k pairs) and train the tiny supernet for 100 updates, once."""
    from fairseq_shiftadd.prep import multi30k

    src = Path(os.environ.get("MULTI30K_DIR", REPO.parent / "shared" / "data" / "multi30k"))
    data = multi30k.prepare(src, work / "data", "en-de", vocab_size=1000, max_train=10_000)
    checkpoint = work / "supernet" / "checkpoint_last.pt"
    if not checkpoint.is_file():
        subprocess.run([
            str(Path(sys.executable).parent / "fairseq-train"), str(data), "--user-dir", "fairseq_shiftadd",
            "--task", "shiftadd_translation", "--arch", "shiftadd_supernet_tiny", "--sharing", "heterogeneous",
            "--criterion", "shiftadd_label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--optimizer", "adam",
            "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "30",
            "--max-tokens", "1024", "--max-update", "100", "--disable-validation", "--no-epoch-checkpoints",
            "--save-interval-updates", "100", "--save-dir", str(checkpoint.parent), "--seed", "1",
            "--num-workers", "0",
        ], cwd=REPO, check=True)
    return checkpoint, data


class _Timed:
    """A batch fitness that records the seconds it spends."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, subs: Sequence[SubnetConfig]) -> List[float]:
        start = time.perf_counter()
        out = list(self.fn(subs))
        self.seconds += time.perf_counter() - start
        return out


def seeding(space_name: str, population: int, uniform_draws: int = 20_000) -> None:
    """Generation 0 under energy bounds at quantiles of uniform draws (see the module docstring)."""
    space = get_space(space_name)
    model = CostModel(space)
    energies = sorted(model.metrics(sample(space, random.Random(i)))["energy_mj"] for i in range(uniform_draws))
    config = EvolutionConfig(population=population, parents=1, mutations=population - 1, crossovers=0, generations=1)
    print(f"space {space_name}, population {population}, {uniform_draws} uniform draws for the quantiles, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| quantile | energy bound (mJ) | draws | acceptance | repaired | seconds | "
          "pure rejection (expected draws) |")
    print("|---|---|---|---|---|---|---|")
    for quantile in (0.5, 0.05, 0.005, 0.0005):
        bound = energies[int(quantile * uniform_draws)]
        constraint = parse_constraint(f"energy_mj<={bound}", SEARCH_METRICS)
        accepted = sum(e <= bound for e in energies) / uniform_draws
        start = time.perf_counter()
        result = EvolutionarySearch(TranslationDomain(space), config, lambda subs: [0.0] * len(subs), model.metrics,
                                    [constraint], progress=False).run()
        seconds = time.perf_counter() - start
        stats = result.stats[0]
        print(f"| {quantile:g} | {bound:.1f} | {stats.draws} | {stats.acceptance:.1%} | {stats.repaired} | "
              f"{seconds:.1f} | {population / accepted:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, help="supernet checkpoint (default: train a tiny one)")
    parser.add_argument("--data", type=Path, help="its data-bin (with --path)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/shiftadd_search_bench"))
    parser.add_argument("--sentences", type=int, default=200, help="validation sentences per candidate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--population", type=int, nargs=4, default=[24, 8, 8, 8],
                        metavar=("POP", "PARENTS", "MUTATIONS", "CROSSOVERS"))
    parser.add_argument("--constraint", default=None, help="e.g. 'energy_mj<=5' (default: none)")
    parser.add_argument("--seeding", metavar="SPACE", help="measure generation 0 under tight constraints instead")
    parser.add_argument("--seeding-population", type=int, default=125, help="generation 0's size with --seeding")
    args = parser.parse_args()
    if args.seeding:
        seeding(args.seeding, args.seeding_population)
        return
    checkpoint, data = (args.path, args.data) if args.path else _tiny_supernet(args.work_dir)

    fitness = ValidationFitness(checkpoint, data=str(data), max_sentences=args.sentences, batch_size=args.batch_size)
    constraints = [parse_constraint(args.constraint, SEARCH_METRICS)] if args.constraint else []
    metrics = cost_metrics(fitness.space, [c.metric for c in constraints],
                           workload=Workload(vocab_size=len(fitness.task.target_dictionary)))
    pop, parents, mutations, crossovers = args.population
    config = EvolutionConfig(population=pop, parents=parents, mutations=mutations, crossovers=crossovers,
                             generations=args.generations)

    timed = _Timed(fitness)
    start = time.perf_counter()
    result = EvolutionarySearch(TranslationDomain(fitness.space), config, timed, metrics, constraints,
                                progress=False).run()
    total = time.perf_counter() - start

    start = time.perf_counter()
    engine = EvolutionarySearch(TranslationDomain(fitness.space), config, lambda subs: [0.0] * len(subs), metrics,
                                constraints, progress=False).run()
    engine_s = time.perf_counter() - start

    print(f"load average {os.getloadavg()[0]:.1f}; {fitness.sentences} validation sentences per candidate; "
          f"population {pop} ({parents}+{mutations}+{crossovers}), {args.generations} generations")
    print(f"search:      {result.evaluations} candidates in {total:.1f} s = {result.evaluations / total * 60:.1f} "
          f"candidates/min ({timed.seconds / total:.0%} of the time in the fitness)")
    print(f"engine only: {engine.evaluations} candidates in {engine_s:.3f} s = "
          f"{engine.evaluations / engine_s * 60:.0f} candidates/min (zero-cost fitness)")


if __name__ == "__main__":
    main()
