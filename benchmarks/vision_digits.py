"""Vision demo on scikit-learn's digits: supernet -> search under an energy constraint -> retrain, per seed.

    OMP_NUM_THREADS=1 python benchmarks/vision_digits.py [--seeds 1 2 3] [--out runs/vision_digits]

Per seed, with the console commands' own code (:mod:`fairseq_shiftadd.vision.cli`):

1. train a heterogeneous-sharing supernet on the ``digits`` space (one sampled subnet per update);
2. search it (validation loss with inherited weights, BatchNorm recalibrated) under
   ``conv_energy_ratio <= 0.6``: at most 60 % of the energy of the same widths and depths built from conv blocks;
3. retrain the winner from scratch, and four fixed models with the same widths, depths and expansions with the
   same recipe and budget: all-conv, all-shift, all-add (the lowest-resolution stage, which offers only
   attention and conv, stays conv) and the hand-designed hybrid pattern (conv blocks, attention at the lowest
   resolution, as BoTNet, whose layout the original's BossNAS-style space generalises).

Test accuracy is measured once per model, on the checkpoint with the best validation accuracy. The search's proxy is
measured too: each model's validation accuracy with inherited supernet weights (BatchNorm recalibrated as in the
search), and the Kendall tau between it and the retrained validation accuracy (per seed and pooled). Prints and writes
(``OUT/results.json``, ``OUT/results.md``) the mean and spread (sample standard deviation) over seeds of test accuracy,
inherited accuracy and energy per image, and the wall time of each seed. A killed run resumes where it stopped. Seeds
run as separate processes (``--seeds 2 --out B``) are tabulated together with
``--combine A/results.json B/results.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List

from scipy.stats import kendalltau

from fairseq_shiftadd.vision import cli
from fairseq_shiftadd.vision.data import load_digits
from fairseq_shiftadd.vision.search import SupernetFitness
from fairseq_shiftadd.vision.space import (
    BlockConfig,
    StageConfig,
    VisionBlock,
    VisionSubnet,
    get_space,
    load_subnet,
)

SPACE = get_space("digits")
CONSTRAINT = "conv_energy_ratio<=0.6"
TRAIN = ["--batch-size", "32", "--lr", "3e-3", "--augment-shift", "1", "--no-progress"]
SUPERNET_EPOCHS, RETRAIN_EPOCHS = 40, 40
CALIBRATION_BATCHES = 4
SEARCH = ["--population", "20", "--parents", "5", "--mutations", "8", "--crossovers", "7", "--generations", "6",
          "--calibration-batches", str(CALIBRATION_BATCHES), "--no-progress"]


def fixed_models(searched: VisionSubnet) -> Dict[str, VisionSubnet]:
    """The four baselines with the searched subnet's widths, depths and expansions."""

    def pattern(pick) -> VisionSubnet:
        return VisionSubnet(tuple(
            StageConfig(s.width, tuple(BlockConfig(pick(i, stage.blocks), b.expansion) for b in s.blocks))
            for i, (s, stage) in enumerate(zip(searched.stages, SPACE.stages))))

    def uniform(kind: VisionBlock):
        return pattern(lambda i, allowed: kind if kind in allowed else VisionBlock.CONV)

    last = len(SPACE.stages) - 1
    return {"all-conv": uniform(VisionBlock.CONV), "all-shift": uniform(VisionBlock.SHIFT),
            "all-add": uniform(VisionBlock.ADD),
            "hand-designed hybrid": pattern(
                lambda i, allowed: VisionBlock.ATTENTION if i == last else VisionBlock.CONV)}


def inherited_scores(supernet_path: Path, models: Dict[str, VisionSubnet]) -> Dict[str, Dict[str, float]]:
    """The search's proxy for each model: validation loss and accuracy with inherited supernet weights
    (BatchNorm recalibrated as in the search), to set against the retrained accuracy."""
    supernet, data = cli.load_supernet(str(supernet_path)), load_digits()
    fitness = SupernetFitness(supernet, data.train, data.valid, CALIBRATION_BATCHES)
    scores = {name: fitness.evaluate(subnet) for name, subnet in models.items()}
    return {name: {"inherited_valid_loss": v["loss"], "inherited_valid_accuracy": v["accuracy"]}
            for name, v in scores.items()}


def run_seed(seed: int, out: Path) -> Dict[str, Dict[str, float]]:
    started, cpu_started = time.time(), time.process_time()
    root = out / f"seed{seed}"
    s = ["--seed", str(seed)]
    cli.train_main(["--save-dir", str(root / "supernet"), "--epochs", str(SUPERNET_EPOCHS), *TRAIN, *s])
    cli.search_main(["--supernet", str(root / "supernet" / "checkpoint_last.pt"), "--save-dir", str(root / "search"),
                     "--constraint", CONSTRAINT, *SEARCH, *s])
    searched = load_subnet(root / "search" / "best.yaml")
    models = {"searched hybrid": searched, **fixed_models(searched)}
    inherited = inherited_scores(root / "supernet" / "checkpoint_last.pt", models)
    results = {}
    for name, subnet in models.items():
        save_dir = root / name.replace(" ", "_")
        cli.retrain_main(["--subnet", json.dumps(subnet.to_dict()), "--save-dir", str(save_dir),
                          "--epochs", str(RETRAIN_EPOCHS), *TRAIN, *s])
        results[name] = {**json.loads((save_dir / "results.json").read_text()), **inherited[name]}
    results["seconds"], results["cpu_seconds"] = time.time() - started, time.process_time() - cpu_started
    return results


def _mean_std(values: List[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4g} ± {spread:.2g}"


def table(per_seed: Dict[int, Dict]) -> str:
    names = [n for n in next(iter(per_seed.values())) if n not in ("seconds", "cpu_seconds")]
    lines = ["| model | test accuracy (%) | inherited valid accuracy (%) | energy (mJ / image) | vs all-conv energy | "
             f"params | blocks (seed {min(per_seed)}) |", "|---|---|---|---|---|---|---|"]
    for name in names:
        acc = [100 * r[name]["test_accuracy"] for r in per_seed.values()]
        inherited = [100 * r[name]["inherited_valid_accuracy"] for r in per_seed.values()]
        energy = [r[name]["energy_mj"] for r in per_seed.values()]
        ratio = [r[name]["energy_mj"] / r["all-conv"]["energy_mj"] for r in per_seed.values()]
        params = [r[name]["params"] for r in per_seed.values()]
        lines.append(f"| {name} | {_mean_std(acc)} | {_mean_std(inherited)} | {_mean_std(energy)} | "
                     f"{_mean_std(ratio)} | "
                     f"{_mean_std(params)} | {per_seed[min(per_seed)][name]['describe'].replace(' | ', ' / ')} |")
    seconds = ", ".join(f"seed {k}: {v['seconds'] / 60:.1f} min" + (f" ({v['cpu_seconds'] / 60:.1f} min CPU)"
                                                                     if "cpu_seconds" in v else "")
                        for k, v in per_seed.items())
    return ("\n".join(lines) + f"\n\nSeeds {sorted(per_seed)}; mean ± sample std. {proxy_quality(per_seed)} "
            f"Wall time: {seconds}.\n")


def proxy_quality(per_seed: Dict[int, Dict]) -> str:
    """Kendall tau between the inherited validation accuracy (the proxy) and the retrained validation accuracy
    of the models of each seed, and pooled over the seeds (ties count as in ``scipy.stats.kendalltau``)."""
    pairs = {seed: [(r[n]["inherited_valid_accuracy"], r[n]["valid_accuracy"]) for n in r
                    if n not in ("seconds", "cpu_seconds")] for seed, r in per_seed.items()}
    taus = {seed: kendalltau(*zip(*p))[0] for seed, p in pairs.items()}
    pooled = kendalltau(*zip(*[pair for p in pairs.values() for pair in p]))[0]
    per = ", ".join(f"seed {seed}: {tau:.2f}" for seed, tau in taus.items())
    return f"Proxy quality, Kendall tau(inherited, retrained validation accuracy): {per}; pooled {pooled:.2f}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="runs/vision_digits")
    parser.add_argument("--combine", nargs="+", default=None, metavar="RESULTS_JSON",
                        help="only tabulate the results.json files of runs made separately (e.g. one per seed)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.combine:
        per_seed = {int(k): v for path in args.combine for k, v in json.loads(Path(path).read_text()).items()}
    else:
        per_seed = {seed: run_seed(seed, out) for seed in args.seeds}
    (out / "results.json").write_text(json.dumps(per_seed, indent=2) + "\n")
    text = table(per_seed)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
