"""``fairseq-shiftadd-search``: evolutionary search of a trained supernet's subnets (ShiftAddNAS, arXiv 2205.08119).

    fairseq-shiftadd-search DATA --user-dir fairseq_shiftadd --path supernet.pt --save-dir search \\
        --max-tokens 4096 --constraint "energy_mj<=40" [--multi-objective energy_mj] [--objective bleu --beam 2]

fairseq's generation options apply (``--max-tokens``, ``--batch-size``, ``--cpu``, ``--seed``, ``--beam``,
``--post-process``, ``--valid-subset``, ``--max-valid-steps``, ``--distributed-world-size``); the search's own
are in the "search" group (``--help``). With ``--distributed-world-size N`` (or under ``torchrun``) the
candidates of each generation are split across N ranks. Outputs: see :mod:`.report`; ``state.json`` makes
the search resumable (restart with the same ``--save-dir``).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from fairseq import options

from ..cli_errors import add_debug_flag, run_main, short_usage
from ..cost import workload_header
from .constraints import Constraint, parse_constraint
from .costs import MEASURED, SEARCH_METRICS, add_cost_args, cost_metrics, search_workload
from .distributed import from_rank0, launch, rank_and_world, split_batch
from .domain import TranslationDomain
from .evolution import EvolutionConfig, EvolutionarySearch
from .fitness import OBJECTIVES, ValidationFitness
from .report import write_report

logger = logging.getLogger("fairseq_shiftadd.search")

__all__ = ["get_parser", "main"]

SYNOPSIS = "DATA --path SUPERNET.pt --save-dir DIR --max-tokens N [--constraint METRIC<=BOUND]..."


def add_search_args(parser: argparse.ArgumentParser) -> None:
    defaults = EvolutionConfig()
    group = parser.add_argument_group("search")
    group.add_argument("--objective", choices=OBJECTIVES, default="loss",
                       help="fitness: validation loss (minimised) or BLEU (maximised, beam search with --beam)")
    group.add_argument("--multi-objective", default=None, metavar="METRIC[,METRIC]",
                       help="return the Pareto front of the fitness vs these cost metrics (NSGA-II) in one run; "
                            f"metrics: {', '.join(SEARCH_METRICS)}")
    group.add_argument("--constraint", action="append", default=[], metavar="METRIC<=BOUND",
                       help="hardware constraint, e.g. 'energy_mj<=2.5' (operators <=, <, >=, >); repeatable")
    add_cost_args(group)
    group.add_argument("--population", type=int, default=defaults.population, help="population size")
    group.add_argument("--parents", type=int, default=defaults.parents, help="parents kept per generation")
    group.add_argument("--mutations", type=int, default=defaults.mutations, help="mutants per generation")
    group.add_argument("--crossovers", type=int, default=defaults.crossovers, help="crossovers per generation")
    group.add_argument("--mutation-prob", type=float, default=defaults.mutation_prob,
                       help="probability that a mutation redraws each gene")
    group.add_argument("--generations", type=int, default=defaults.generations, help="generations (iterations)")
    group.add_argument("--max-rejections", type=int, default=defaults.max_rejections,
                       help="draws in a row that may violate the constraints before giving up")
    group.add_argument("--threads", type=int, default=0,
                       help="CPU threads per rank (default 0: torch's default; 1 is fastest on a busy machine)")
    group.add_argument("--max-valid-sentences", type=int, default=None,
                       help="evaluate fitness on the first N sentences of --valid-subset (default: all)")


def get_parser() -> argparse.ArgumentParser:
    from .. import registry  # noqa: F401  (registers shiftadd_translation, the default task)

    parser = options.get_generation_parser(default_task="shiftadd_translation")
    add_search_args(parser)
    add_debug_flag(parser)
    return short_usage(parser, SYNOPSIS)


def _settings(args: argparse.Namespace) -> Tuple[List[Constraint], EvolutionConfig]:
    """The constraints and the search configuration; ``ValueError`` on an unknown metric or a bad value."""
    constraints = [parse_constraint(text, SEARCH_METRICS) for text in args.constraint]
    pareto = [m.strip() for m in (args.multi_objective or "").split(",") if m.strip()]
    unknown = [m for m in pareto if m not in SEARCH_METRICS]
    if unknown:
        raise ValueError(f"--multi-objective metric(s) {unknown} not in allowed values {SEARCH_METRICS}")
    config = EvolutionConfig(
        population=args.population, parents=args.parents, mutations=args.mutations, crossovers=args.crossovers,
        mutation_prob=args.mutation_prob, generations=args.generations, seed=args.seed,
        max_rejections=args.max_rejections, fitness=args.objective, pareto_metrics=tuple(pareto),
    )
    return constraints, config


def _search(args: argparse.Namespace) -> None:
    """One rank's search (every rank runs it; rank 0 writes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        force=True)  # importing fairseq may have set the root logger to DEBUG
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world = rank_and_world()
    constraints, config = _settings(args)
    pareto = list(config.pareto_metrics)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    fitness = ValidationFitness(
        Path(args.path), objective=args.objective, data=args.data, subset=args.valid_subset.split(",")[0],
        max_sentences=args.max_valid_sentences, max_batches=args.max_valid_steps, max_tokens=args.max_tokens,
        batch_size=args.batch_size, generation=args if args.objective == "bleu" else None,
        post_process=args.post_process, device=device, progress=rank == 0,
    )
    needed = list(dict.fromkeys([c.metric for c in constraints] + pareto))
    workload = search_workload(args, len(fitness.task.target_dictionary),
                               getattr(fitness.model_cfg, "quant_bits", None))
    logger.info("costed sentence: %s, profile %s", workload.describe(), args.hardware_profile)
    metrics = cost_metrics(fitness.space, needed, args.hardware_profile, workload, args.latency_predictor, device)
    out_dir = Path(args.save_dir)
    search = EvolutionarySearch(
        TranslationDomain(fitness.space), config, split_batch(fitness), from_rank0(metrics) if MEASURED in needed else metrics,
        constraints, state_path=out_dir / "state.json", write_state=rank == 0, progress=rank == 0,
    )
    start = time.perf_counter()
    result = search.run()
    elapsed = time.perf_counter() - start
    if rank != 0:
        return
    x_metric = pareto[0] if pareto else (constraints[0].metric if constraints else "energy_mj")
    paths = write_report(out_dir, result, args.objective, bool(pareto), x_metric, constraints,
                         cost_record=workload_header(workload, args.hardware_profile))
    for path, best in zip(paths, result.best):
        summary = ", ".join(f"{k} {v:.6g}" for k, v in best.metrics.items())
        logger.info("%s: %s %.4f, %s", path, args.objective, best.fitness, summary)
    rate = result.new_evaluations / (elapsed / 60) if elapsed > 0 else float("nan")
    logger.info(
        "%d evaluations (%d in this run, %d ranks, %d sentences each) in %.1f s: %.1f candidates/min",
        result.evaluations, result.new_evaluations, world, fitness.sentences, elapsed, rate,
    )


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = get_parser()
    args = options.parse_args_and_arch(parser, None if argv is None else list(argv))
    if args.path is None or not Path(args.path).is_file():
        parser.error(f"--path must name a supernet checkpoint file (got {args.path!r})")
    if args.max_tokens is None and args.batch_size is None:
        parser.error("set --max-tokens or --batch-size (validation batching)")
    try:
        _settings(args)  # fail before loading anything or starting ranks
        search_workload(args)
    except ValueError as err:
        parser.error(str(err))
    launch(_search, (args,), world_size=args.distributed_world_size, cpu=args.cpu)


main = run_main(_main, "fairseq-shiftadd-search")

if __name__ == "__main__":
    main()
