"""The results of the CPU demo (``scripts/demo.sh``): the searched hybrid subnet against the Transformer baseline.

For every model (a fairseq-train save directory, the subnet of the search space it is, and its test decode)
the report gives: detokenized sacreBLEU and tokenized compound-split BLEU (:mod:`.scoring`); energy of one
sentence on a hardware profile and the parameter and mult/add/shift counts (:class:`.cost.CostModel`: a
30-token source, 30 decoding steps, beam 1); latency of ``checkpoint_best.pt`` measured on this machine
(:func:`.cost.measure.time_model`, HAT's protocol on the same workload); and the training time and updates
recorded in ``checkpoint_last.pt``. A plain
fairseq ``transformer`` counts as the space's subnet of the same shape (``largest`` of the ``demo`` space:
the same layers and the same parameter count).

Outputs, in ``--out`` (written atomically): ``results.md`` (the table, also printed), ``results.json``
and ``front.png``: the search's candidates (energy vs validation loss with inherited supernet weights),
their Pareto front and the models marked, each labelled with its test sacreBLEU. A model that the search
did not evaluate (the baseline lies outside the energy constraint) is evaluated on the supernet with
``--supernet`` on the same validation sentences (``--max-valid-sentences``, as given to the search).

    python -m fairseq_shiftadd.demo_report --space demo --data DATA_BIN --reference raw/test.de --target-lang de \\
        --model hybrid search/best.yaml hybrid hybrid/test.gen --model baseline largest baseline baseline/test.gen \\
        --candidates search/candidates.csv --supernet supernet/checkpoint_best.pt --out report
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from .cost import CostModel, Workload
from .cli_errors import add_debug_flag, run_main
from .scoring import read_generate_output, read_reference, score
from .search.pareto import pareto_front
from .space import SearchSpace, SubnetConfig, get_space, resolve_subnet

__all__ = ["ModelSpec", "ModelResult", "Candidate", "describe", "training_progress", "evaluate_model",
           "read_candidates", "format_table", "plot_front", "main"]

COLUMNS = {  # result field -> table header
    "name": "model",
    "sacrebleu": "sacreBLEU",
    "tokenized_bleu": "tok. BLEU",
    "energy_mj": "energy (mJ/sent)",
    "latency_ms": "latency (ms)",
    "params": "params",
    "mults": "mults",
    "adds": "adds",
    "shifts": "shifts",
    "train_s": "train (s)",
    "updates": "updates",
}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the report: its name, the subnet it is, its fairseq-train save directory and test decode."""

    name: str
    subnet: SubnetConfig
    save_dir: Path
    generate_output: Path


@dataclass(frozen=True)
class ModelResult:
    """One row of the table (see the module docstring for what each number is)."""

    name: str
    subnet: str
    sacrebleu: float
    sacrebleu_signature: str
    tokenized_bleu: float
    energy_mj: float
    latency_ms: float
    params: int
    mults: int
    adds: int
    shifts: int
    train_s: float
    updates: int


@dataclass(frozen=True)
class Candidate:
    """One proposal of the search (a row of its ``candidates.csv``); ``fitness`` is ``None`` when rejected."""

    subnet: SubnetConfig
    energy_mj: float
    fitness: Optional[float]


def describe(sub: SubnetConfig) -> str:
    """A one-line summary, layer by layer: ``enc attention+lightweight_conv/shift512, ... | dec ...``."""

    def side(layers) -> str:
        return ", ".join(f"{layer.block.value}/{layer.ffn_op.value}{layer.ffn_dim}" for layer in layers)

    return f"enc {side(sub.encoder)} | dec {side(sub.decoder)}"


def measure_checkpoint_latency(checkpoint: Path, data: str, workload: Workload, threads: int) -> float:
    """Latency (ms) of a trained checkpoint on this CPU: HAT's protocol on ``workload``, ``threads`` torch threads."""
    from fairseq import checkpoint_utils

    from .cost.measure import time_model

    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], arg_overrides={"data": data})
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timing = time_model(models[0].float(), device="cpu", src_len=workload.src_len, tgt_len=workload.tgt_len,
                            beam=workload.beam)
    finally:
        torch.set_num_threads(previous)
    return timing.total_ms


def training_progress(save_dir: Path) -> tuple:
    """``(seconds, updates)`` of training recorded in ``save_dir/checkpoint_last.pt`` (fairseq's extra state)."""
    path = Path(save_dir) / "checkpoint_last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint_last.pt in {save_dir}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    return float(state["extra_state"]["previous_training_time"]), int(state["optimizer_history"][-1]["num_updates"])


def evaluate_model(spec: ModelSpec, hypotheses: Sequence[str], cost_model: CostModel, references: Sequence[str],
                   target_lang: str, data: str, threads: int) -> ModelResult:
    """Scores, costs, measured latency and training time of one model (see the module docstring).

    ``hypotheses`` are its decoded test sentences (:func:`~.scoring.read_generate_output`, which refuses a
    decode that lost sentences), paired with ``references``.
    """
    checkpoint = spec.save_dir / "checkpoint_best.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"model {spec.name!r}: checkpoint not found: {checkpoint}")
    scores = score(hypotheses, references, target_lang)
    metrics = cost_model.metrics(spec.subnet)
    latency = measure_checkpoint_latency(checkpoint, data, cost_model.workload, threads)
    seconds, updates = training_progress(spec.save_dir)
    return ModelResult(
        name=spec.name, subnet=describe(spec.subnet), sacrebleu=scores.sacrebleu,
        sacrebleu_signature=scores.sacrebleu_signature, tokenized_bleu=scores.tokenized_bleu,
        energy_mj=metrics["energy_mj"], latency_ms=latency, params=int(metrics["params"]),
        mults=int(metrics["mults"]), adds=int(metrics["adds"]), shifts=int(metrics["shifts"]),
        train_s=seconds, updates=updates,
    )


def read_candidates(path: Path) -> List[Candidate]:
    """The proposals of a search's ``candidates.csv`` (its fitness column is the fourth: ``loss`` or ``bleu``)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or "energy_mj" not in header or "subnet" not in header:
            raise ValueError(f"{path}: not a search candidates.csv with energy_mj and subnet columns (header {header})")
        energy, fitness, subnet = header.index("energy_mj"), 3, header.index("subnet")
        return [
            Candidate(SubnetConfig.from_json(row[subnet]), float(row[energy]), float(row[fitness]) if row[fitness] else None)
            for row in reader
        ]


def _fmt(field: str, value: object) -> str:
    if field in ("params", "mults", "adds", "shifts"):
        return f"{value / 1e6:.2f}M"  # type: ignore[operator]
    if isinstance(value, float):
        return f"{value:.0f}" if field == "train_s" else f"{value:.2f}"
    return str(value)


def format_table(results: Sequence[ModelResult], workload: Workload, profile: str) -> str:
    """The markdown table of the results, with a legend of the units and the subnets."""
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        lines.append("| " + " | ".join(_fmt(field, getattr(r, field)) for field in COLUMNS) + " |")
    lines.append("")
    lines.append(
        f"Energy ({profile} profile), mults/adds/shifts and latency: one sentence, {workload.src_len}-token source, "
        f"{workload.tgt_len} decoding steps, beam {workload.beam}; latency measured on this machine "
        f"(mean of the 10-90 % trimmed runs). BLEU on the test set, beam search as decoded."
    )
    lines += [f"- {r.name}: {r.subnet}" for r in results]
    lines.append(f"- sacreBLEU signature: {results[0].sacrebleu_signature}" if results else "")
    return "\n".join(lines) + "\n"


def plot_front(path: Path, candidates: Sequence[Candidate], marks: Dict[str, tuple]) -> None:
    """Energy vs validation loss of the evaluated candidates, their Pareto front, and ``marks``.

    Args:
        marks: model name -> ``(energy_mj, validation loss, test sacreBLEU)``.
    """
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq may have set the root logger to DEBUG
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluated = [c for c in candidates if c.fitness is not None]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([c.energy_mj for c in evaluated], [c.fitness for c in evaluated], s=12, color="0.6",
               label=f"evaluated candidates ({len(evaluated)})")
    points = [(c.fitness, c.energy_mj) for c in evaluated]
    front = sorted((evaluated[i] for i in pareto_front(points)), key=lambda c: c.energy_mj)
    ax.plot([c.energy_mj for c in front], [c.fitness for c in front], "k.-", label="Pareto front")
    for (name, (energy, loss, bleu)), marker in zip(marks.items(), ("r*", "bs", "g^", "mD")):
        ax.plot([energy], [loss], marker, markersize=13, label=f"{name}: sacreBLEU {bleu:.1f}, {energy:.2f} mJ")
    ax.set_xlabel("energy per sentence (mJ, 45 nm)")
    ax.set_ylabel("validation loss with inherited supernet weights")
    ax.set_title("search front and the two trained models")
    ax.legend(fontsize=8)
    fig.tight_layout()
    partial = path.with_name(path.name + ".partial")
    fig.savefig(partial, format="png", dpi=120)
    plt.close(fig)
    os.replace(partial, path)


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _supernet_losses(subs: Dict[str, SubnetConfig], candidates: Sequence[Candidate], supernet: Optional[Path],
                     data: str, max_sentences: Optional[int], max_tokens: int) -> Dict[str, float]:
    """The inherited validation loss of each subnet: from the candidates, else evaluated on ``supernet``."""
    known = {c.subnet: c.fitness for c in candidates if c.fitness is not None}
    losses = {name: known[sub] for name, sub in subs.items() if sub in known}
    missing = {name: sub for name, sub in subs.items() if name not in losses}
    if missing and supernet is not None:
        from .search.fitness import ValidationFitness

        fitness = ValidationFitness(supernet, objective="loss", data=data, max_sentences=max_sentences,
                                    max_tokens=max_tokens)
        losses.update({name: fitness.loss(sub) for name, sub in missing.items()})
    return losses


def _parse_model(values: Sequence[str], space: SearchSpace) -> ModelSpec:
    name, subnet, save_dir, generate_output = values
    return ModelSpec(name, resolve_subnet(subnet, space, "--model SUBNET"), Path(save_dir), Path(generate_output))


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fairseq_shiftadd.demo_report", description="Results table and search-front plot of the CPU demo.")
    parser.add_argument("--space", default="demo", help="the search space the models' subnets belong to")
    parser.add_argument("--data", required=True, help="fairseq data-bin (dictionaries of the checkpoints)")
    parser.add_argument("--reference", required=True, type=Path, help="untouched test references, e.g. raw/test.de")
    parser.add_argument("--target-lang", required=True, help="target language (Moses tokenizer, compound splitting)")
    parser.add_argument("--model", nargs=4, action="append", required=True,
                        metavar=("NAME", "SUBNET", "SAVE_DIR", "GENERATE_OUTPUT"),
                        help="a model: SUBNET is largest, smallest or a subnet file, SAVE_DIR its fairseq-train "
                             "save directory, GENERATE_OUTPUT its fairseq-generate output; repeatable")
    parser.add_argument("--candidates", type=Path, help="the search's candidates.csv (for front.png)")
    parser.add_argument("--supernet", type=Path, help="supernet checkpoint, to place models the search did not evaluate")
    parser.add_argument("--max-valid-sentences", type=int, default=None, help="as given to the search")
    parser.add_argument("--max-tokens", type=int, default=4096, help="batch size of that evaluation, in tokens")
    parser.add_argument("--hardware-profile", default="45nm", help="cost-model profile")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the latency measurement")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    space = get_space(args.space)
    specs = [_parse_model(values, space) for values in args.model]
    references = read_reference(args.reference)
    # every decode must hold every test sentence: checked for all models before any is evaluated
    hypotheses = {s.name: read_generate_output(s.generate_output, expected=len(references)) for s in specs}
    from fairseq.data import Dictionary

    vocab_size = len(Dictionary.load(os.path.join(args.data, f"dict.{args.target_lang}.txt")))
    cost_model = CostModel(space, profile=args.hardware_profile, workload=Workload(vocab_size=vocab_size))
    results = [evaluate_model(s, hypotheses[s.name], cost_model, references, args.target_lang, args.data, args.threads)
               for s in specs]

    args.out.mkdir(parents=True, exist_ok=True)
    table = format_table(results, cost_model.workload, args.hardware_profile)
    _write_atomic(args.out / "results.md", table)
    _write_atomic(args.out / "results.json", json.dumps([asdict(r) for r in results], indent=2) + "\n")
    if args.candidates is not None:
        candidates = read_candidates(args.candidates)
        losses = _supernet_losses({s.name: s.subnet for s in specs}, candidates, args.supernet, args.data,
                                  args.max_valid_sentences, args.max_tokens)
        marks = {r.name: (r.energy_mj, losses[r.name], r.sacrebleu) for r in results if r.name in losses}
        plot_front(args.out / "front.png", candidates, marks)
    print(table, end="")


main = run_main(_main, "fairseq_shiftadd.demo_report")

if __name__ == "__main__":
    main()
