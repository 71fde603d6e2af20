"""Measured latency on the user's own device and the latency predictor trained on it (HAT, arXiv 2005.14187).

    from fairseq_shiftadd.latency import TimingProtocol, measure_latency
    protocol = TimingProtocol(device="cpu", src_len=30, tgt_len=30, beam=1, warmup=5, runs=20, clock="wall")
    measure_latency(space, sub, protocol).total_ms

Modules: :mod:`.protocol` (:class:`TimingProtocol`: how a latency is measured, validated once),
:mod:`.measure` (timing a model or a subnet under a protocol), :mod:`.dataset` (the resumable latency CSV),
:mod:`.predictor` (HAT's MLP trained on such a CSV, its held-out error), :mod:`.cli` (the console scripts
``fairseq-shiftadd-latency-dataset`` and ``fairseq-shiftadd-train-latency-predictor``). Needs torch; fairseq
only where a model is built (imported there).
"""
from .dataset import CSV_FIELDS, LatencyRecord, collect_latency_dataset, read_latency_csv
from .measure import (
    DEFAULT_VOCAB_SIZE,
    LatencyMeasurement,
    build_latency_model,
    measure_latency,
    time_model,
    time_models,
    trimmed_mean,
)
from .predictor import LatencyPredictor, PredictorReport, train_predictor
from .protocol import CLOCKS, TimingProtocol

__all__ = [
    "TimingProtocol",
    "CLOCKS",
    "DEFAULT_VOCAB_SIZE",
    "LatencyMeasurement",
    "trimmed_mean",
    "build_latency_model",
    "time_model",
    "time_models",
    "measure_latency",
    "LatencyRecord",
    "CSV_FIELDS",
    "read_latency_csv",
    "collect_latency_dataset",
    "LatencyPredictor",
    "PredictorReport",
    "train_predictor",
]
