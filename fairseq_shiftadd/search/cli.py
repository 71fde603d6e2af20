"""``fairseq-shiftadd-search``: evolutionary search of a trained supernet's subnets (ShiftAddNAS, arXiv 2205.08119).

    fairseq-shiftadd-search DATA --user-dir fairseq_shiftadd --path supernet.pt --save-dir search \\
        --max-tokens 4096 --constraint "energy_mj<=40" [--multi-objective energy_mj] [--objective bleu --beam 2]

fairseq's generation options apply (``--max-tokens``, ``--batch-size``, ``--cpu``, ``--seed``, ``--beam``,
``--post-process``, ``--valid-subset``, ``--max-valid-steps``, ``--distributed-world-size``); the search's own
are in the "search" group (``--help``). With ``--distributed-world-size N`` (or under ``torchrun``) the
candidates of each generation are split across N ranks. Outputs: see :mod:`.report`; ``state.json`` makes
the search resumable (rerun the same command); a rerun with other settings (:mod:`.fingerprint`) is refused
with the differences, and ``--restart`` deletes the previous outputs and starts over.

Every option that can be checked without the checkpoint and the data (constraints, metrics, profile, cost
workload, predictor file, data directory) is checked before anything is loaded or any rank starts. SIGTERM
and Ctrl-C stop the search (ranks included): the state of the last finished generation is kept, and a rerun
resumes from it.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from fairseq import options

from ..atomic import partial_path, remove
from ..cli_errors import add_debug_flag, run_main, short_usage
from ..cli_types import positive_int
from ..cost import HardwareProfile, load_profile, workload_header
from ..space import SpaceRecord, check, parse_restriction, parse_subnet_spec, resolve_subnet, restrict
from .constraints import Constraint, parse_constraint
from .metrics import MEASURED, SEARCH_METRICS, add_cost_args, check_metric_sources, cost_metrics, search_workload
from .distributed import from_rank0, launch, rank_and_world, split_batch, stop_on_sigterm
from .domain import TranslationDomain
from .evolution import EvolutionConfig, EvolutionarySearch, search_fingerprint
from .fingerprint import search_settings
from .fitness import OBJECTIVES, ValidationFitness
from .report import OUTPUTS, write_report
from .state import read_fingerprint, refuse_other_settings

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
    group.add_argument("--max-draws", type=int, default=defaults.max_draws,
                       help="cap of the adaptive rejection budget per proposal and of a repair walk's mutations "
                            "(a tight constraint switches to the repair walk; see the README)")
    group.add_argument("--threads", type=int, default=0,
                       help="CPU threads per rank (default 0: torch's default; 1 is fastest on a busy machine)")
    group.add_argument("--max-valid-sentences", type=positive_int, default=None,
                       help="evaluate fitness on the first N sentences of --valid-subset (default: all)")
    group.add_argument("--restrict", action="append", default=[], metavar="FIELD=V1[,V2...]",
                       help="search a sub-space of the supernet's space: FIELD (a SearchSpace field, or X for "
                            "encoder_X and decoder_X) keeps only these values; repeatable, e.g. "
                            "--restrict blocks=attention --restrict ffn_ops=mult (HAT's space)")
    group.add_argument("--initial-subnet", action="append", default=[], metavar="SUBNET",
                       help="a subnet that opens generation 0 before the random draws (a warm start, e.g. the "
                            "best.yaml of a search of a sub-space); it must meet the constraints; repeatable")
    group.add_argument("--restart", action="store_true",
                       help="delete the previous outputs of --save-dir (state.json included) and start over")


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
        max_draws=args.max_draws, fitness=args.objective, pareto_metrics=tuple(pareto),
    )
    return constraints, config


def _check_options(args: argparse.Namespace) -> HardwareProfile:
    """Check every option that needs neither the checkpoint nor the data loaded; returns the hardware profile.

    Raises:
        ValueError: one line naming the option and what is allowed.
    """
    if args.path is None or not Path(args.path).is_file():
        raise ValueError(f"--path must name a supernet checkpoint file (got {args.path!r})")
    if args.max_tokens is None and args.batch_size is None:
        raise ValueError("set --max-tokens or --batch-size (validation batching)")
    subset = args.valid_subset.split(",")[0]
    for directory in args.data.split(":"):
        if not Path(directory).is_dir():
            raise ValueError(f"DATA {directory!r} is not a directory")
        if not list(Path(directory).glob(f"{subset}.*")):
            raise ValueError(f"DATA {directory!r} has no files of --valid-subset {subset!r}")
    constraints, config = _settings(args)
    for spec in args.initial_subnet:  # checked against the supernet's space once it is loaded
        parse_subnet_spec(spec, "--initial-subnet")
    try:  # the values are checked against the supernet's space once it is loaded
        parse_restriction(args.restrict)
    except ValueError as err:
        raise ValueError(f"--restrict: {err}") from None
    check_metric_sources([c.metric for c in constraints] + list(config.pareto_metrics), args.latency_predictor)
    try:
        profile = load_profile(args.hardware_profile)
    except ValueError as err:
        raise ValueError(f"--hardware-profile: {err}") from None
    search_workload(args)  # the --cost-* values (the data's vocabulary and the supernet's bits come later)
    if args.cost_bits is not None and args.cost_bits not in profile.bit_widths:
        raise ValueError(f"--cost-bits {args.cost_bits} not in --hardware-profile {profile.name!r}'s widths "
                         f"{profile.bit_widths}")
    if args.latency_predictor is not None:
        from ..latency.predictor import LatencyPredictor

        try:
            LatencyPredictor.load(args.latency_predictor)
        except (FileNotFoundError, ValueError) as err:  # torch's unpickling errors span several lines
            raise ValueError(f"--latency-predictor: {str(err).splitlines()[0]}") from None
    return profile


def _configure_logging(rank: int = 0) -> None:
    """INFO on rank 0; warnings and errors only on the other ranks (rank 0 reports the search for all of them)."""
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        force=True)  # importing fairseq may have set the root logger to DEBUG


def _search(args: argparse.Namespace, settings: Dict[str, Any]) -> None:
    """One rank's search (every rank runs it; rank 0 writes)."""
    rank, world = rank_and_world()
    _configure_logging(rank)  # a spawned rank starts a fresh interpreter
    if args.threads:
        torch.set_num_threads(args.threads)
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
    try:
        space = restrict(fitness.space, parse_restriction(args.restrict))
    except ValueError as err:
        raise SystemExit(f"fairseq-shiftadd-search: error: --restrict: {err}") from None
    stages = cost_metrics(space, needed, args.hardware_profile, workload, args.latency_predictor, device)
    if MEASURED in needed:
        stages[-1] = from_rank0(stages[-1])
    out_dir = Path(args.save_dir)
    initial = []
    for spec in args.initial_subnet:  # a subnet of the supernet's space (a file's recorded one must be it) ...
        try:
            sub = resolve_subnet(spec, fitness.space, "--initial-subnet")
        except ValueError as err:
            raise SystemExit(f"fairseq-shiftadd-search: error: {err}") from None
        try:
            check(space, sub)  # ... inside --restrict
        except ValueError as err:
            raise SystemExit(f"fairseq-shiftadd-search: error: --initial-subnet {spec} is outside --restrict: {err}") \
                from None
        initial += [] if sub in initial else [sub]
    search = EvolutionarySearch(
        TranslationDomain(space), config, split_batch(fitness), stages, constraints,
        state_path=out_dir / "state.json", write_state=rank == 0, progress=rank == 0, settings=settings,
        initial=initial,
    )
    start = time.perf_counter()
    result = search.run()
    elapsed = time.perf_counter() - start
    if rank != 0:
        return
    x_metric = pareto[0] if pareto else (constraints[0].metric if constraints else "energy_mj")
    records = (workload_header(workload, args.hardware_profile), SpaceRecord.of(fitness.space).header())
    paths = write_report(out_dir, result, args.objective, bool(pareto), x_metric, constraints, records)
    for path, best in zip(paths, result.best):
        summary = ", ".join(f"{k} {v:.6g}" for k, v in best.metrics.items())
        logger.info("%s: %s %.4f, %s", path, args.objective, best.fitness, summary)
    rate = result.new_evaluations / (elapsed / 60) if elapsed > 0 else float("nan")
    logger.info(
        "%d evaluations (%d in this run, %d ranks, %d sentences each) in %.1f s: %.1f candidates/min; "
        "%.1f %% of %d draws met the constraints",
        result.evaluations, result.new_evaluations, world, fitness.sentences, elapsed, rate,
        100 * result.acceptance, sum(s.draws for s in result.stats),
    )


def _prepare_output_dir(out_dir: Path, restart: bool) -> None:
    """Remove what a killed run may have left half-written (``*.partial``), and with ``restart`` every output."""
    for name in OUTPUTS:
        remove(partial_path(out_dir / name))
        if restart:
            remove(out_dir / name)
    if restart:
        logger.info("--restart: removed the previous outputs of %s", out_dir)


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = get_parser()
    args = options.parse_args_and_arch(parser, None if argv is None else list(argv))
    _configure_logging()
    profile = _check_options(args)  # fail before loading anything or starting ranks
    settings = search_settings(args, profile.source)
    out_dir = Path(args.save_dir)
    state_path = out_dir / "state.json"
    if state_path.is_file() and not args.restart:  # the engine checks the space too, once it is loaded
        constraints, config = _settings(args)
        refuse_other_settings(state_path, read_fingerprint(state_path),
                              search_fingerprint(config, constraints, settings),
                              "rerun with the same settings, use another --save-dir, or add --restart to start over")
    if int(os.environ.get("RANK", "0")) == 0:
        _prepare_output_dir(out_dir, args.restart)
    stop_on_sigterm()
    try:
        launch(_search, (args, settings), world_size=args.distributed_world_size, cpu=args.cpu)
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"fairseq-shiftadd-search: stopped by {signal.Signals(signum).name}; the last finished generation "
              f"is saved in {state_path}: rerun the same command to resume", file=sys.stderr)
        sys.exit(128 + signum)


main = run_main(_main, "fairseq-shiftadd-search")

if __name__ == "__main__":
    main()
