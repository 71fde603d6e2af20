"""Quality of the vision supernet as the search's proxy, on the digits (ShiftAddNAS, arXiv 2205.08119).

    OMP_NUM_THREADS=1 python benchmarks/vision_proxy.py [--sharing heterogeneous] [--epochs 40] [--sandwich]
        [--calibration-batches 4] [--ablate none|gamma-one|addernet-grad|both] [--out runs/vision_proxy]

Trains a supernet on the ``digits`` space with the recipe of ``benchmarks/vision_digits.py`` (batch 32, AdamW
3e-3 cosine, 1-pixel translations, one sampled subnet per update, seed 1), then scores a fixed panel of 12
subnets with inherited weights (validation loss and accuracy after BatchNorm recalibration, as the search does),
together with the largest and smallest subnets. The panel (``random.Random(2024)``) holds the first 6 sampled
subnets within ``conv_energy_ratio <= 0.6`` (the benchmark's constraint) and the first 6 outside it; each is
also retrained from scratch with the same recipe (40 epochs, seed 1; cached in ``OUT/panel``, so the retraining
is done once for every supernet variant). Prints one JSON line: the inherited accuracies, the retrained
validation accuracies and the Kendall tau between them (by accuracy and by loss; all 12 and the 6 feasible).

``--ablate`` rebuilds the supernet as it was before the two fixes of its recipe, to measure them:
``gamma-one`` gives every candidate's last BatchNorm the scale 1 instead of 0 (no zero-init residual),
``addernet-grad`` gives add candidates AdderNet's weight-gradient norm ``0.2 sqrt(numel(w))`` instead of the
mult candidate's (``GradNorm.MULT``), ``both`` does both. The test split is never read.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Dict, List

import torch
from scipy.stats import kendalltau

from fairseq_shiftadd.ops import add_conv2d
from fairseq_shiftadd.vision import blocks, cli
from fairseq_shiftadd.vision.cost import VisionCostModel
from fairseq_shiftadd.vision.data import ImageData, load_digits
from fairseq_shiftadd.vision.models import VisionSupernet
from fairseq_shiftadd.vision.search import SupernetFitness
from fairseq_shiftadd.vision.space import VisionSubnet, get_space, largest, sample, smallest
from fairseq_shiftadd.vision.train import TrainConfig, fit, supernet_loss

SPACE = get_space("digits")
TRAIN = dict(batch_size=32, lr=3e-3, augment_shift=1)
RETRAIN = ["--epochs", "40", "--batch-size", "32", "--lr", "3e-3", "--augment-shift", "1", "--no-progress",
           "--seed", "1"]
PANEL_SEED, PANEL_SIZE, RATIO_BOUND = 2024, 6, 0.6


def panel() -> List[VisionSubnet]:
    """The first ``PANEL_SIZE`` sampled subnets within ``conv_energy_ratio <= RATIO_BOUND``, then the first
    ``PANEL_SIZE`` outside it."""
    cost, rng = VisionCostModel(SPACE, "45nm"), random.Random(PANEL_SEED)
    feasible: List[VisionSubnet] = []
    other: List[VisionSubnet] = []
    while len(feasible) < PANEL_SIZE or len(other) < PANEL_SIZE:
        subnet = sample(SPACE, rng)
        group = feasible if cost.metrics(subnet)["conv_energy_ratio"] <= RATIO_BOUND else other
        if len(group) < PANEL_SIZE:
            group.append(subnet)
    return feasible + other


def retrained_accuracy(subnets: List[VisionSubnet], out: Path) -> List[float]:
    """Best validation accuracy of each subnet retrained from scratch (resumed / reused from ``out``)."""
    accuracies = []
    for i, subnet in enumerate(subnets):
        save_dir = out / f"r{i}"
        if not (save_dir / "results.json").is_file():
            cli.retrain_main(["--subnet", json.dumps(subnet.to_dict()), "--save-dir", str(save_dir), *RETRAIN])
        accuracies.append(json.loads((save_dir / "results.json").read_text())["valid_accuracy"])
    return accuracies


def ablate(supernet: VisionSupernet, what: str) -> None:
    """Undo the recipe's fixes for a measurement (see the module docstring)."""
    if what in ("gamma-one", "both"):
        with torch.no_grad():
            for stage in supernet.stages:
                for block in stage:
                    for norms in block.norms.values():
                        norms[-1].weight.fill_(1.0)
    if what in ("addernet-grad", "both"):
        blocks.add_conv2d = lambda x, weight, stride, padding, **_: add_conv2d(x, weight, stride, padding)


def train_supernet(args: argparse.Namespace, data: ImageData, save_dir: Path) -> VisionSupernet:
    """The supernet of the benchmark's recipe (``--ablate``: without its fixes), validated each epoch as
    ``fairseq-shiftadd-vision-train`` does: its largest subnet, BatchNorm recalibrated."""
    torch.manual_seed(args.seed)
    supernet = VisionSupernet(SPACE, args.sharing)
    ablate(supernet, args.ablate)
    config = TrainConfig(epochs=args.epochs, seed=args.seed, sandwich=args.sandwich, **TRAIN)
    probe = SupernetFitness(supernet, data.train, data.valid)
    fit(supernet, supernet_loss(config), data, config, save_dir, {"ablate": args.ablate, "sharing": args.sharing},
        valid_fn=lambda m: probe.evaluate(largest(SPACE)), progress=False)
    return supernet.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sharing", choices=("none", "shared", "heterogeneous"), default="heterogeneous")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--sandwich", action="store_true")
    parser.add_argument("--calibration-batches", type=int, default=4)
    parser.add_argument("--ablate", choices=("none", "gamma-one", "addernet-grad", "both"), default="none")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/vision_proxy")
    args = parser.parse_args()
    out = Path(args.out)
    started = time.time()
    name = f"{args.sharing}-e{args.epochs}{'-sandwich' if args.sandwich else ''}-{args.ablate}-s{args.seed}"
    data = load_digits()
    supernet = train_supernet(args, data, out / "supernets" / name)
    seconds = time.time() - started
    fitness = SupernetFitness(supernet, data.train, data.valid, args.calibration_batches)
    subnets = panel()
    inherited = [fitness.evaluate(s) for s in subnets]
    extremes: Dict[str, float] = {n: 100 * fitness.evaluate(f(SPACE))["accuracy"]
                                  for n, f in (("largest", largest), ("smallest", smallest))}
    retrained = [100 * a for a in retrained_accuracy(subnets, out / "panel")]
    accuracy = [100 * v["accuracy"] for v in inherited]
    neg_loss = [-v["loss"] for v in inherited]
    feasible = slice(0, PANEL_SIZE)

    def tau(proxy: List[float], part: slice = slice(None)) -> float:
        return round(float(kendalltau(proxy[part], retrained[part])[0]), 3)

    print(json.dumps({
        "supernet": name, "calibration_batches": args.calibration_batches, "train_seconds": round(seconds),
        **{k: round(v, 1) for k, v in extremes.items()},
        "panel_inherited_mean": round(sum(accuracy) / len(accuracy), 1),
        "panel_inherited": [round(a, 1) for a in accuracy], "panel_retrained": [round(a, 1) for a in retrained],
        "tau_accuracy": tau(accuracy), "tau_loss": tau(neg_loss),
        "tau_accuracy_feasible": tau(accuracy, feasible), "tau_loss_feasible": tau(neg_loss, feasible),
        "panel": [s.describe() for s in subnets]}))


if __name__ == "__main__":
    main()
