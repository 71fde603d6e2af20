"""The CPU demo's report, one job per module: reading the runs (:mod:`.runs`), measuring each model
(:mod:`.evaluate`), the table (:mod:`.table`), the search-front plot (:mod:`.plot`), and the command that puts
them together, ``python -m fairseq_shiftadd.reports.demo`` (:mod:`.demo`, run by ``scripts/demo.sh``)."""
from .evaluate import ModelResult, best_checkpoint, describe, evaluate_model, measure_checkpoint_latencies
from .plot import plot_front
from .runs import CandidateRow, ModelSpec, checkpoint_quant_bits, read_candidates, training_progress
from .table import COLUMNS, format_table

__all__ = ["ModelSpec", "CandidateRow", "ModelResult", "COLUMNS", "describe", "training_progress",
           "checkpoint_quant_bits", "read_candidates", "best_checkpoint", "measure_checkpoint_latencies",
           "evaluate_model", "format_table", "plot_front"]
