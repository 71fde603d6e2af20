"""Reading what the demo's runs left on disk: the models to report, their training records, the search's proposals.

A model of the report is a fairseq-train save directory, the subnet of the search space it is, and its test decode
(:class:`ModelSpec`); training time and updates come from its ``checkpoint_last.pt``, its arithmetic width from
``checkpoint_best.pt``; the search's proposals are the rows of its ``candidates.csv`` (:class:`CandidateRow`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

import torch

from ..space import SubnetConfig

__all__ = ["ModelSpec", "CandidateRow", "training_progress", "checkpoint_quant_bits", "read_candidates"]


@dataclass(frozen=True)
class ModelSpec:
    """One model of the report: its name, the subnet it is, its fairseq-train save directory and test decode."""

    name: str
    subnet: SubnetConfig
    save_dir: Path
    generate_output: Path


@dataclass(frozen=True)
class CandidateRow:
    """One row of a search's ``candidates.csv``: a proposal, its energy, and its fitness (``None``: rejected by the
    constraints, never evaluated). Not :class:`~fairseq_shiftadd.search.state.Candidate`, the search's own record."""

    subnet: SubnetConfig
    energy_mj: float
    fitness: Optional[float]


def training_progress(save_dir: Path) -> Tuple[float, int]:
    """``(seconds, updates)`` of training recorded in ``save_dir/checkpoint_last.pt`` (fairseq's extra state).

    Raises:
        FileNotFoundError: ``save_dir`` has no ``checkpoint_last.pt``.
    """
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


def read_candidates(path: Path) -> List[CandidateRow]:
    """The proposals of a search's ``candidates.csv`` (its fitness column is the fourth: ``loss`` or ``bleu``).

    Raises:
        ValueError: the file lacks the ``energy_mj`` or ``subnet`` column (the message names the file).
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or "energy_mj" not in header or "subnet" not in header:
            raise ValueError(f"{path}: not a search candidates.csv with energy_mj and subnet columns (header {header})")
        energy, fitness, subnet = header.index("energy_mj"), 3, header.index("subnet")
        return [
            CandidateRow(SubnetConfig.from_json(row[subnet]), float(row[energy]),
                         float(row[fitness]) if row[fitness] else None)
            for row in reader
        ]
