"""The results of the CPU demo (``scripts/demo.sh``): the searched hybrid, the winner of the same search restricted to
attention blocks with mult FFNs, and the Transformer baseline (any number of models, one ``--model`` each).

For every model (a fairseq-train save directory, the subnet of the search space it is, and its test decode)
the report gives: detokenized sacreBLEU and tokenized compound-split BLEU (:mod:`.scoring`); energy of one
sentence on a hardware profile under both accountings (:class:`.cost.CostModel`, a 30-token source:
``streaming``, 30 decoding steps at the decoding beam ``--beam``, the output projection included; and the
paper's ``original``, one teacher-forced pass with weights fetched once), the share of each that no per-layer
gene of the space can change (:meth:`.cost.CostModel.fixed_energy_mj`), and the parameter and mult/add/shift
counts (streaming), all at the model's arithmetic width (its checkpoint's ``quant_bits``, 32 for a float
model); latency of ``checkpoint_best.pt`` measured on this machine
(:func:`.latency.time_model`, HAT's protocol on the streaming workload); and the training time and updates
recorded in ``checkpoint_last.pt``. A plain
fairseq ``transformer`` counts as the space's subnet of the same shape (``largest`` of the ``demo`` space:
the same layers and the same parameter count).

Outputs, in ``--out`` (written atomically): ``results.md`` (the table, also printed), ``results.json``
and ``front.png``: the search's candidates (energy vs validation loss with inherited supernet weights),
their Pareto front and the models marked, each labelled with its test sacreBLEU; the models' energies there use
the workload the search recorded in a model's subnet file (its ``best.yaml``), so they sit on the candidates'
scale. A model that the search
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import torch

from .cli_errors import add_debug_flag, run_main
from .cost import ACCOUNTINGS, CostModel, Workload, read_workload_header
from .scoring import read_generate_output, read_reference, score
from .search.pareto import pareto_front
from .space import SearchSpace, SubnetConfig, get_space, resolve_subnet

__all__ = ["ModelSpec", "ModelResult", "Candidate", "describe", "training_progress", "evaluate_model",
           "read_candidates", "format_table", "plot_front", "main"]

COLUMNS = {  # result field -> table header
    "name": "model",
    "sacrebleu": "sacreBLEU",
    "tokenized_bleu": "tok. BLEU",
    "bits": "bits",
    "energy_streaming_mj": "energy, streaming (mJ/sent)",
    "energy_original_mj": "energy, original (mJ/sent)",
    "fixed_share_streaming": "fixed share, streaming",
    "fixed_share_original": "fixed share, original",
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
    bits: int
    energy_streaming_mj: float
    energy_original_mj: float
    fixed_share_streaming: float
    fixed_share_original: float
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

    from .latency import TimingProtocol, time_model

    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], arg_overrides={"data": data})
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timing = time_model(models[0].float(), TimingProtocol.for_workload(workload, "cpu"))
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


def checkpoint_quant_bits(checkpoint: Path) -> Optional[int]:
    """The ``quant_bits`` of a checkpoint's model config (``None``: a float model, or a model without the field)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = (state.get("cfg") or {}).get("model")
    if isinstance(model, Mapping):
        return model.get("quant_bits")
    return getattr(model, "quant_bits", None)  # a legacy architecture's argparse Namespace, or None


def evaluate_model(spec: ModelSpec, hypotheses: Sequence[str], cost_models: Dict[str, CostModel],
                   references: Sequence[str], target_lang: str, data: str, threads: int) -> ModelResult:
    """Scores, costs, measured latency and training time of one model (see the module docstring).

    Args:
        hypotheses: its decoded test sentences (:func:`~.scoring.read_generate_output`, which refuses a
            decode that lost sentences), paired with ``references``.
        cost_models: accounting (each of :data:`~.cost.ACCOUNTINGS`) -> its cost model; a model trained with
            ``quant_bits`` is costed at that width instead of the cost model's.
    """
    checkpoint = spec.save_dir / "checkpoint_best.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"model {spec.name!r}: checkpoint not found: {checkpoint}")
    scores = score(hypotheses, references, target_lang)
    bits = checkpoint_quant_bits(checkpoint) or 32
    cost_models = {a: m if m.workload.bits == bits else CostModel(m.space, m.profile, replace(m.workload, bits=bits))
                   for a, m in cost_models.items()}
    metrics = cost_models["streaming"].metrics(spec.subnet)
    original = cost_models["original"].metrics(spec.subnet)
    latency = measure_checkpoint_latency(checkpoint, data, cost_models["streaming"].workload, threads)
    seconds, updates = training_progress(spec.save_dir)
    return ModelResult(
        name=spec.name, subnet=describe(spec.subnet), sacrebleu=scores.sacrebleu,
        sacrebleu_signature=scores.sacrebleu_signature, tokenized_bleu=scores.tokenized_bleu, bits=bits,
        energy_streaming_mj=metrics["energy_mj"], energy_original_mj=original["energy_mj"],
        fixed_share_streaming=cost_models["streaming"].fixed_energy_mj(spec.subnet) / metrics["energy_mj"],
        fixed_share_original=cost_models["original"].fixed_energy_mj(spec.subnet) / original["energy_mj"],
        latency_ms=latency,
        params=int(metrics["params"]), mults=int(metrics["mults"]), adds=int(metrics["adds"]),
        shifts=int(metrics["shifts"]),
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
    if field.startswith("fixed_share"):
        return f"{100 * value:.0f} %"  # type: ignore[operator]
    if isinstance(value, float):
        return f"{value:.0f}" if field == "train_s" else f"{value:.2f}"
    return str(value)


def format_table(results: Sequence[ModelResult], workloads: Dict[str, Workload], profile: str) -> str:
    """The markdown table of the results, with a legend of the units, the accountings and the subnets.

    Args:
        workloads: accounting -> the workload its energy column was computed with.
    """
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        lines.append("| " + " | ".join(_fmt(field, getattr(r, field)) for field in COLUMNS) + " |")
    lines.append("")
    streaming = workloads["streaming"]
    lines.append(
        f"Energy of one sentence ({profile} profile) under each accounting: "
        + "; ".join(f"{accounting}: {workload.describe()}" for accounting, workload in workloads.items())
        + " (a model trained with --quant-bits: at its own bits, column bits). Fixed share: the share of that energy no per-layer gene of the space can change at the model's size. "
        "Mults/adds/shifts: streaming. Latency measured on this machine on the streaming workload "
        f"({streaming.tgt_len} steps, beam {streaming.beam}; mean of the 10-90 % trimmed runs). "
        f"BLEU on the test set, beam search as decoded."
    )
    lines += [f"- {r.name}: {r.subnet}" for r in results]
    lines.append(f"- sacreBLEU signature: {results[0].sacrebleu_signature}" if results else "")
    return "\n".join(lines) + "\n"


def plot_front(path: Path, candidates: Sequence[Candidate], marks: Dict[str, tuple],
               energy_label: str = "energy per sentence (mJ, 45 nm)") -> None:
    """Energy vs validation loss of the evaluated candidates, their Pareto front, and ``marks``.

    Args:
        marks: model name -> ``(energy_mj, validation loss, test sacreBLEU)``, energies on the candidates' scale.
        energy_label: the x axis (profile and accounting of the candidates' energies).
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
    ax.set_xlabel(energy_label)
    ax.set_ylabel("validation loss with inherited supernet weights")
    ax.set_title("search front and the trained models")
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


def _search_cost_model(models: Sequence[Sequence[str]], space: SearchSpace, default: CostModel) -> CostModel:
    """The cost model of the search's candidates: the workload and profile recorded in the first model subnet
    file that has them (the search's ``best.yaml``), else ``default``."""
    for _, subnet, _, _ in models:
        if Path(subnet).suffix in (".yaml", ".yml", ".json") and Path(subnet).is_file():
            record = read_workload_header(subnet)
            if record is not None:
                return CostModel(space, profile=record[1], workload=record[0])
    return default


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
    parser.add_argument("--hardware-profile", default="45nm", help="cost-model profile (default: %(default)s)")
    parser.add_argument("--beam", type=int, default=5,
                        help="the beam the models were decoded with: the streaming accounting's and the measured "
                             "latency's (default: %(default)s, as examples/multi30k_en_de/generate.args)")
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
    workloads = {accounting: Workload(vocab_size=vocab_size, accounting=accounting,
                                      beam=args.beam if accounting == "streaming" else 1)
                 for accounting in ACCOUNTINGS}
    cost_models = {a: CostModel(space, profile=args.hardware_profile, workload=w) for a, w in workloads.items()}
    results = [evaluate_model(s, hypotheses[s.name], cost_models, references, args.target_lang, args.data,
                              args.threads) for s in specs]

    args.out.mkdir(parents=True, exist_ok=True)
    table = format_table(results, workloads, args.hardware_profile)
    _write_atomic(args.out / "results.md", table)
    _write_atomic(args.out / "results.json", json.dumps([asdict(r) for r in results], indent=2) + "\n")
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


main = run_main(_main, "fairseq_shiftadd.demo_report")

if __name__ == "__main__":
    main()
