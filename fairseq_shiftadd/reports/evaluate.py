"""Measuring one model of the demo's report: BLEU, energy under both accountings, measured latency, training time.

For every model (:class:`~.runs.ModelSpec`) :func:`evaluate_model` gives: detokenized sacreBLEU and tokenized
compound-split BLEU (:mod:`fairseq_shiftadd.scoring`); energy of one sentence on a hardware profile under both
accountings (:class:`~fairseq_shiftadd.cost.CostModel`, a 30-token source: ``streaming``, 30 decoding steps at the
decoding beam, the output projection included; and the paper's ``original``, one teacher-forced pass with weights
fetched once), the share of each that no per-layer gene of the space can change
(:meth:`~fairseq_shiftadd.cost.CostModel.fixed_energy_mj`), and the parameter and mult/add/shift counts
(streaming), all at the model's arithmetic width (its checkpoint's ``quant_bits``, 32 for a float model); latency
of ``checkpoint_best.pt`` measured on this machine (:func:`measure_checkpoint_latencies`: ``time_model``, HAT's
protocol on the streaming workload, all the report's models in alternating rounds); and the training time and
updates recorded in ``checkpoint_last.pt``. A plain fairseq ``transformer`` counts as
the space's subnet of the same shape (``largest`` of the ``demo`` space: the same layers and parameter count).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from ..cost import CostModel, Workload
from ..scoring import score
from ..space import SubnetConfig
from .runs import ModelSpec, checkpoint_quant_bits, training_progress

__all__ = ["ModelResult", "LATENCY_ROUNDS", "describe", "best_checkpoint", "measure_checkpoint_latencies",
           "evaluate_model"]

LATENCY_ROUNDS = 3
"""Alternating rounds in which :func:`measure_checkpoint_latencies` times the report's models."""


@dataclass(frozen=True)
class ModelResult:
    """One row of the report's table (see the module docstring for what each number is)."""

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


def describe(sub: SubnetConfig) -> str:
    """A one-line summary, layer by layer: ``enc attention+lightweight_conv/shift512, ... | dec ...``."""

    def side(layers) -> str:
        return ", ".join(f"{layer.block.value}/{layer.ffn_op.value}{layer.ffn_dim}" for layer in layers)

    return f"enc {side(sub.encoder)} | dec {side(sub.decoder)}"


def best_checkpoint(spec: ModelSpec) -> Path:
    """The model's ``checkpoint_best.pt``.

    Raises:
        FileNotFoundError: it is missing.
    """
    checkpoint = spec.save_dir / "checkpoint_best.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"model {spec.name!r}: checkpoint not found: {checkpoint}")
    return checkpoint


def measure_checkpoint_latencies(checkpoints: Sequence[Path], data: str, workload: Workload, threads: int,
                                 rounds: int = LATENCY_ROUNDS) -> List[float]:
    """Latency (ms) of each trained checkpoint on this CPU: HAT's protocol on ``workload``, ``threads`` torch threads,
    the models timed in ``rounds`` alternating rounds (:func:`~fairseq_shiftadd.latency.time_models`; on this
    project's shared VM one model measured 2x apart from one demo run to the next).
    """
    from fairseq import checkpoint_utils

    from ..latency import TimingProtocol, time_models

    models = [checkpoint_utils.load_model_ensemble([str(c)], arg_overrides={"data": data})[0][0].float()
              for c in checkpoints]
    protocol = TimingProtocol.for_workload(workload, "cpu")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return time_models(models, protocol, rounds)
    finally:
        torch.set_num_threads(previous)


def evaluate_model(spec: ModelSpec, hypotheses: Sequence[str], cost_models: Dict[str, CostModel],
                   references: Sequence[str], target_lang: str, latency_ms: float) -> ModelResult:
    """Scores, costs and training time of one model, with its measured latency (see the module docstring).

    Args:
        hypotheses: its decoded test sentences (:func:`~fairseq_shiftadd.scoring.read_generate_output`, which
            refuses a decode that lost sentences), paired with ``references``.
        cost_models: accounting (each of :data:`~fairseq_shiftadd.cost.ACCOUNTINGS`) -> its cost model; a model
            trained with ``quant_bits`` is costed at that width instead of the cost model's.
        latency_ms: its latency from :func:`measure_checkpoint_latencies`.

    Raises:
        FileNotFoundError: the model's ``checkpoint_best.pt`` or ``checkpoint_last.pt`` is missing.
    """
    checkpoint = best_checkpoint(spec)
    scores = score(hypotheses, references, target_lang)
    bits = checkpoint_quant_bits(checkpoint) or 32
    cost_models = {a: m if m.workload.bits == bits else CostModel(m.space, m.profile, replace(m.workload, bits=bits))
                   for a, m in cost_models.items()}
    metrics = cost_models["streaming"].metrics(spec.subnet)
    original = cost_models["original"].metrics(spec.subnet)
    seconds, updates = training_progress(spec.save_dir)
    return ModelResult(
        name=spec.name, subnet=describe(spec.subnet), sacrebleu=scores.sacrebleu,
        sacrebleu_signature=scores.sacrebleu_signature, tokenized_bleu=scores.tokenized_bleu, bits=bits,
        energy_streaming_mj=metrics["energy_mj"], energy_original_mj=original["energy_mj"],
        fixed_share_streaming=cost_models["streaming"].fixed_energy_mj(spec.subnet) / metrics["energy_mj"],
        fixed_share_original=cost_models["original"].fixed_energy_mj(spec.subnet) / original["energy_mj"],
        latency_ms=latency_ms,
        params=int(metrics["params"]), mults=int(metrics["mults"]), adds=int(metrics["adds"]),
        shifts=int(metrics["shifts"]),
        train_s=seconds, updates=updates,
    )
