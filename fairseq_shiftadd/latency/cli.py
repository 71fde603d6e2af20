"""Console scripts for measured latency (HAT's protocol) and the latency predictor trained on it.

    fairseq-shiftadd-latency-dataset --space tiny --samples 200 --out lat.csv [--device cpu|cuda] [--beam 4]
        [--threads N] [--seed S] [--vocab-size V] [--runs R] [--warmup W] [--clock wall|cpu]
    fairseq-shiftadd-train-latency-predictor --data lat.csv --space tiny --out pred.pt [--epochs E] [--seed S]

The first measures sampled subnets on this machine (resuming a killed run, see
:func:`~.dataset.collect_latency_dataset`) under the :class:`~.protocol.TimingProtocol` its options
give (the options are the protocol's fields); the second trains :class:`~.predictor.LatencyPredictor` on
that CSV and prints its held-out error (test-split MAPE and Kendall tau).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..cli_errors import add_debug_flag, run_main
from ..cli_types import non_negative_int, positive_int
from ..space import SPACES, get_space
from .protocol import CLOCKS, TimingProtocol

__all__ = ["dataset_main", "train_main"]


def _dataset_main(argv: Optional[Sequence[str]] = None) -> None:
    """``fairseq-shiftadd-latency-dataset``: measure sampled subnets into a CSV."""
    from .dataset import collect_latency_dataset
    from .measure import DEFAULT_VOCAB_SIZE

    defaults = TimingProtocol()
    parser = argparse.ArgumentParser(description="Measure the latency of sampled subnets (HAT's protocol) into a CSV.")
    parser.add_argument("--space", required=True, choices=sorted(SPACES), help="search space")
    parser.add_argument("--samples", type=positive_int, required=True, help="distinct subnets to measure (in all)")
    parser.add_argument("--out", type=Path, required=True,
                        help="CSV to write; an existing one is resumed (only with the same settings)")
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--beam", type=positive_int, default=defaults.beam,
                        help="beam rows in the decoder (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subnet sampler (default: 0)")
    parser.add_argument("--src-len", type=positive_int, default=defaults.src_len,
                        help="source tokens (default: %(default)s)")
    parser.add_argument("--tgt-len", type=positive_int, default=defaults.tgt_len,
                        help="decoder steps (default: %(default)s)")
    parser.add_argument("--warmup", type=non_negative_int, default=defaults.warmup,
                        help="untimed runs (default: %(default)s)")
    parser.add_argument("--runs", type=positive_int, default=defaults.runs,
                        help="timed runs, 10-90%% trimmed (default: %(default)s)")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default=defaults.clock,
        help="wall (HAT's latency, default) or cpu (CPU time of one thread: --device cpu --threads 1, "
        "for a shared, busy machine)",
    )
    parser.add_argument(
        "--vocab-size", type=positive_int, default=DEFAULT_VOCAB_SIZE,
        help=f"dictionary size: the output projection's width (default: {DEFAULT_VOCAB_SIZE}, as the cost model)",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    protocol = TimingProtocol(**{name: getattr(args, name) for name in TimingProtocol.field_names()})
    records = collect_latency_dataset(
        get_space(args.space), args.samples, args.out, protocol, args.seed, vocab_size=args.vocab_size
    )
    totals = sorted(r.measurement.total_ms for r in records)
    print(f"{args.out}: {len(records)} subnets on {records[0].device}; total latency "
          f"{totals[0]:.2f} .. {totals[-1]:.2f} ms (median {totals[len(totals) // 2]:.2f} ms)")


def _train_main(argv: Optional[Sequence[str]] = None) -> None:
    """``fairseq-shiftadd-train-latency-predictor``: train a predictor and print its held-out error."""
    from .predictor import TARGETS, TRANSFORMS, train_predictor

    parser = argparse.ArgumentParser(description="Train a latency predictor on a measured latency CSV.")
    parser.add_argument("--data", type=Path, required=True, help="CSV of fairseq-shiftadd-latency-dataset")
    parser.add_argument("--space", required=True, choices=sorted(SPACES), help="search space of the CSV")
    parser.add_argument("--out", type=Path, required=True, help="predictor file to write (.pt)")
    parser.add_argument("--epochs", type=positive_int, default=300, help="training epochs (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the initialisation")
    parser.add_argument("--target", choices=TARGETS, default="total_ms", help="latency to predict")
    parser.add_argument("--transform", choices=TRANSFORMS, default="log", help="regress log or raw latency")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    predictor, report = train_predictor(
        args.data, get_space(args.space), epochs=args.epochs, seed=args.seed, target=args.target,
        transform=args.transform,
    )
    predictor.save(args.out)
    print(f"{args.out}: {report}")


dataset_main = run_main(_dataset_main, "fairseq-shiftadd-latency-dataset")
train_main = run_main(_train_main, "fairseq-shiftadd-train-latency-predictor")
