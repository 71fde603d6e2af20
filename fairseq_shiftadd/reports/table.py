"""The demo report's markdown table: one row per :class:`~.evaluate.ModelResult`, and a legend of the units, the
accountings and the subnets."""
from __future__ import annotations

from typing import Dict, Sequence

from ..cost import Workload
from .evaluate import LATENCY_ROUNDS, ModelResult

__all__ = ["COLUMNS", "format_table"]

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
        + " (a model trained with --quant-bits: at its own bits, column bits). Fixed share: the share of that energy "
        "no per-layer gene of the space can change at the model's size. "
        "Mults/adds/shifts: streaming. Latency measured on this machine on the streaming workload "
        f"({streaming.tgt_len} steps, beam {streaming.beam}; mean of the 10-90 % trimmed runs; the models timed in "
        f"{LATENCY_ROUNDS} alternating rounds, the median of each model's rounds). "
        f"BLEU on the test set, beam search as decoded."
    )
    lines += [f"- {r.name}: {r.subnet}" for r in results]
    lines.append(f"- sacreBLEU signature: {results[0].sacrebleu_signature}" if results else "")
    return "\n".join(lines) + "\n"
