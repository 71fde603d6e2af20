"""The results of the CPU demo (``scripts/demo.sh``): the searched hybrid, the winner of the same search restricted to
attention blocks with mult FFNs, and the Transformer baseline (any number of models, one ``--model`` each).

Each model is measured by :func:`~.evaluate.evaluate_model` (BLEU, energy under both accountings, fixed-energy
shares, counts, training time), with its latency from :func:`~.evaluate.measure_checkpoint_latencies` (all models
timed in alternating rounds). Outputs, in ``--out`` (written atomically): ``results.md`` (the
table of :mod:`.table`, also printed), ``results.json`` and ``front.png`` (:mod:`.plot`): the search's candidates
(energy vs validation loss with inherited supernet weights), their Pareto front and the models marked, each
labelled with its test sacreBLEU; the models' energies there use the workload the search recorded in a model's
subnet file (its ``best.yaml``), so they sit on the candidates' scale. A model that the search did not evaluate
(the baseline lies outside the energy constraint) is evaluated on the supernet with ``--supernet`` on the same
validation sentences (``--max-valid-sentences``, as given to the search). The models' space (with its block details)
is the ``--supernet`` checkpoint's, else the one a model's subnet file records (the search's ``best.yaml``), else
``--space`` with the original block details.

    python -m fairseq_shiftadd.reports.demo --space demo --data DATA_BIN --reference raw/test.de --target-lang de \\
        --model hybrid search/best.yaml hybrid hybrid/test.gen --model baseline largest baseline baseline/test.gen \\
        --candidates search/candidates.csv --supernet supernet/checkpoint_best.pt --out report
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from ..atomic import write_text
from ..cli_errors import InputError, add_debug_flag, run_main
from ..cli_types import positive_int
from ..cost import ACCOUNTINGS, CostModel, Workload, read_workload_header
from ..scoring import read_generate_output, read_reference
from ..space import SearchSpace, SubnetConfig, get_space, read_space_record, resolve_subnet
from .evaluate import best_checkpoint, evaluate_model, measure_checkpoint_latencies
from .plot import plot_front
from .runs import CandidateRow, ModelSpec, read_candidates
from .table import format_table

__all__ = ["main"]


def _supernet_losses(subs: Dict[str, SubnetConfig], candidates: Sequence[CandidateRow], supernet: Optional[Path],
                     data: str, max_sentences: Optional[int], max_tokens: int) -> Dict[str, float]:
    """The inherited validation loss of each subnet: from the candidates, else evaluated on ``supernet``."""
    known = {c.subnet: c.fitness for c in candidates if c.fitness is not None}
    losses = {name: known[sub] for name, sub in subs.items() if sub in known}
    missing = {name: sub for name, sub in subs.items() if name not in losses}
    if missing and supernet is not None:
        from ..search.fitness import ValidationFitness

        fitness = ValidationFitness(supernet, objective="loss", data=data, max_sentences=max_sentences,
                                    max_tokens=max_tokens)
        losses.update({name: fitness.loss(sub) for name, sub in missing.items()})
    return losses


def _search_cost_model(models: Sequence[Sequence[str]], space: SearchSpace, default: CostModel) -> CostModel:
    """The cost model of the search's candidates: the workload and profile recorded in the first model subnet
    file that has them (the search's ``best.yaml``), else ``default``."""
    for _, subnet, _, _ in models:
        if Path(subnet).suffix in (".yaml", ".yml", ".json") and Path(subnet).is_file():
            record = read_workload_header(subnet)
            if record is not None:
                return CostModel(space, profile=record[1], workload=record[0])
    return default


def _models_space(args: argparse.Namespace) -> Tuple[SearchSpace, str]:
    """The space of the models' subnets and where it comes from: the ``--supernet`` checkpoint's, else the one the
    first model subnet file that records one was searched in (the search's ``best.yaml``), else ``--space`` with
    the original block details."""
    if args.supernet:
        from ..models.space_record import checkpoint_space  # imports fairseq

        return checkpoint_space(args.supernet), "the --supernet checkpoint was built over"
    for _, subnet, _, _ in args.model:
        record = read_space_record(subnet)
        if record is not None:
            return record.space(), f"--model subnet file {subnet!r} was searched in"
    return get_space(args.space), "--space names"


def _parse_model(values: Sequence[str], space: SearchSpace) -> ModelSpec:
    name, subnet, save_dir, generate_output = values
    return ModelSpec(name, resolve_subnet(subnet, space, "--model SUBNET"), Path(save_dir), Path(generate_output))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fairseq_shiftadd.reports.demo",
                                     description="Results table and search-front plot of the CPU demo.")
    parser.add_argument("--space", default="demo",
                        help="the search space the models' subnets belong to; its block details are those the "
                             "--supernet checkpoint or a model's subnet file (best.yaml) records, else the original "
                             "ones (default: %(default)s)")
    parser.add_argument("--data", required=True, help="fairseq data-bin (dictionaries of the checkpoints)")
    parser.add_argument("--reference", required=True, type=Path, help="untouched test references, e.g. raw/test.de")
    parser.add_argument("--target-lang", required=True, help="target language (Moses tokenizer, compound splitting)")
    parser.add_argument("--model", nargs=4, action="append", required=True,
                        metavar=("NAME", "SUBNET", "SAVE_DIR", "GENERATE_OUTPUT"),
                        help="a model: SUBNET is largest, smallest or a subnet file, SAVE_DIR its fairseq-train "
                             "save directory, GENERATE_OUTPUT its fairseq-generate output; repeatable")
    parser.add_argument("--candidates", type=Path, help="the search's candidates.csv (for front.png)")
    parser.add_argument("--supernet", type=Path,
                        help="supernet checkpoint, to place models the search did not evaluate")
    parser.add_argument("--max-valid-sentences", type=positive_int, default=None, help="as given to the search")
    parser.add_argument("--max-tokens", type=positive_int, default=4096,
                        help="batch size of that evaluation, in tokens")
    parser.add_argument("--hardware-profile", default="45nm", help="cost-model profile (default: %(default)s)")
    parser.add_argument("--beam", type=positive_int, default=5,
                        help="the beam the models were decoded with: the streaming accounting's and the measured "
                             "latency's (default: %(default)s, as examples/multi30k_en_de/generate.args)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads for the latency measurement")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    add_debug_flag(parser)
    return parser


def _main(argv: Optional[Sequence[str]] = None) -> None:
    args = _parser().parse_args(argv)
    space, source = _models_space(args)
    if space.name != args.space:
        raise InputError(f"--space {args.space}: {source} space {space.name!r}")
    specs = [_parse_model(values, space) for values in args.model]
    references = read_reference(args.reference)
    # every decode must hold every test sentence: checked for all models before any is evaluated
    hypotheses = {s.name: read_generate_output(s.generate_output, expected=len(references)) for s in specs}
    from fairseq.data import Dictionary

    vocab_size = len(Dictionary.load(os.path.join(args.data, f"dict.{args.target_lang}.txt")))
    workloads = {accounting: Workload(vocab_size=vocab_size, accounting=accounting,
                                      beam=args.beam if accounting == "streaming" else 1)
                 for accounting in ACCOUNTINGS}
    cost_models = {a: CostModel(space, profile=args.hardware_profile, workload=w) for a, w in workloads.items()}
    latencies = measure_checkpoint_latencies([best_checkpoint(s) for s in specs], args.data,
                                             cost_models["streaming"].workload, args.threads)
    results = [evaluate_model(s, hypotheses[s.name], cost_models, references, args.target_lang, latency)
               for s, latency in zip(specs, latencies)]

    args.out.mkdir(parents=True, exist_ok=True)
    table = format_table(results, workloads, args.hardware_profile)
    write_text(args.out / "results.md", table)
    write_text(args.out / "results.json", json.dumps([asdict(r) for r in results], indent=2) + "\n")
    if args.candidates is not None:
        candidates = read_candidates(args.candidates)
        losses = _supernet_losses({s.name: s.subnet for s in specs}, candidates, args.supernet, args.data,
                                  args.max_valid_sentences, args.max_tokens)
        search_cost = _search_cost_model(args.model, space, cost_models["streaming"])
        marks = {s.name: (search_cost.metrics(s.subnet)["energy_mj"], losses[s.name], r.sacrebleu)
                 for s, r in zip(specs, results) if s.name in losses}
        label = f"energy per sentence (mJ, {search_cost.profile.name})\n{search_cost.workload.describe()}"
        plot_front(args.out / "front.png", candidates, marks, label)
    print(table, end="")


main = run_main(_main, "fairseq_shiftadd.reports.demo")

if __name__ == "__main__":
    main()
