"""Console commands of the vision workflow (ShiftAddNAS, arXiv 2205.08119): train the supernet, search, retrain.

    fairseq-shiftadd-vision-train   --space digits --dataset digits --save-dir runs/supernet [--sandwich]
    fairseq-shiftadd-vision-search  --supernet runs/supernet/checkpoint_last.pt --save-dir runs/search \\
                                    --constraint 'energy_mj<=0.08'
    fairseq-shiftadd-vision-retrain --subnet runs/search/best.yaml --space digits --save-dir runs/retrain

(or ``python -m fairseq_shiftadd.vision.cli {train,search,retrain} ...``). Every command resumes from its
``--save-dir`` when restarted; checkpoints carry the space, the subnet, the sharing mode and the seeds, so
search and retrain need nothing else. ``retrain --init-from SUPERNET`` fine-tunes from the inherited weights
instead of training from scratch. The test split is evaluated once, by ``retrain``, on the checkpoint with the
best validation accuracy (written to ``results.json``). No fairseq.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..atomic import write_text
from ..cli_errors import add_debug_flag, run_main
from ..cli_types import non_negative_int, positive_int
from ..search.constraints import parse_constraint
from ..search.evolution import EvolutionConfig
from ..space.resolve import resolve_spec
from .blocks import DEFAULT_SHIFT_MODE
from .cost import VISION_METRICS, VisionCostModel
from .data import DATASETS, ImageData, load_dataset
from .models import VisionNet, VisionSupernet, extract_subnet, recalibrate_batchnorm
from .search import SupernetFitness, run_search
from .space import SPACES, VisionSpace, VisionSubnet, check, get_space, largest, smallest
from .train import TrainConfig, classifier_loss, evaluate, fit, load_checkpoint, supernet_loss

logger = logging.getLogger("fairseq_shiftadd.vision")

__all__ = ["train_main", "search_main", "retrain_main", "main"]


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default="digits",
                       help="digits (sklearn, bundled), cifar (python pickles) or folder (ImageFolder layout)")
    group.add_argument("--data-dir", default=None, help="directory of the cifar or folder dataset")
    group.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    group.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")


def _add_space_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("space")
    group.add_argument("--space", choices=tuple(SPACES), default="digits", help="named vision search space")
    group.add_argument("--image-size", type=positive_int, default=None,
                       help="input size (default: the dataset's, or the space's for a folder dataset)")


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    group = parser.add_argument_group("training")
    group.add_argument("--save-dir", required=True, help="checkpoints (resumed from when present) and logs")
    group.add_argument("--epochs", type=positive_int, default=defaults.epochs, help="passes over the training split")
    group.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="images per update")
    group.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate (AdamW, cosine)")
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                       help="AdamW weight decay of the weight tensors (none on biases, norm scales)")
    group.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs, help="linear warm-up")
    group.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing, help="label smoothing")
    group.add_argument("--augment-shift", type=non_negative_int, default=defaults.augment_shift,
                       help="random translation by up to this many pixels (0: off)")
    group.add_argument("--augment-flip", action="store_true", help="random horizontal flips")
    group.add_argument("--seed", type=int, default=defaults.seed, help="seed of init, batches and subnets")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def _training_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the data, space and training options (train and retrain)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    _add_data_args(parser)
    _add_space_args(parser)
    _add_train_args(parser)
    return parser


def _train_config(args: argparse.Namespace, **extra: object) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
                       augment_shift=args.augment_shift, augment_flip=args.augment_flip, seed=args.seed, **extra)


def _data_and_space(args: argparse.Namespace, space: Optional[VisionSpace] = None) -> tuple[ImageData, VisionSpace]:
    """Load the dataset and fit the space's input size, channels and classes to it (one-line errors)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    requested = getattr(args, "image_size", None)
    space = (space or get_space(args.space)).with_input(image_size=requested)  # validated before loading
    data = load_dataset(args.dataset, args.data_dir, space.image_size, space.in_channels)
    if requested is not None and data.image_size != requested:
        raise ValueError(f"dataset {data.name!r} has {data.image_size} px images; --image-size={requested} "
                         f"needs a folder dataset (which is resized)")
    fitted = space.with_input(image_size=data.image_size, in_channels=data.in_channels, num_classes=data.num_classes)
    return data, fitted


def _entry(main: Callable[[argparse.Namespace], None], make_parser: Callable[[], argparse.ArgumentParser],
           prog: str) -> Callable[[Optional[Sequence[str]]], None]:
    """The console script ``prog``: parse, then ``main(args)``, with the package's one-line input errors."""

    def run(argv: Optional[Sequence[str]]) -> None:
        parser = make_parser()
        add_debug_flag(parser)
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        main(args)

    return run_main(run, prog)


# -- train the supernet ------------------------------------------------------------------------------------------
def train_parser() -> argparse.ArgumentParser:
    parser = _training_parser("fairseq-shiftadd-vision-train",
                              "Train a vision supernet (one sampled subnet per update).")
    group = parser.add_argument_group("supernet")
    group.add_argument("--sharing", choices=("none", "shared", "heterogeneous"), default="heterogeneous",
                       help="weight sharing between the conv / shift / add candidates of a layer")
    group.add_argument("--sandwich", action="store_true", help="largest + smallest + sampled subnet per update")
    group.add_argument("--sharing-reg-weight", type=float, default=TrainConfig().sharing_reg_weight,
                       help="weight of the heterogeneous-sharing regulariser")
    return parser


def _train(args: argparse.Namespace) -> None:
    data, space = _data_and_space(args)
    config = _train_config(args, sandwich=args.sandwich, sharing_reg_weight=args.sharing_reg_weight)
    torch.manual_seed(args.seed)
    model = VisionSupernet(space, args.sharing)
    meta = {"kind": "supernet", "space": space.to_dict(), "sharing": args.sharing, "dataset": args.dataset}
    probe = SupernetFitness(model, data.train, data.valid, device=args.device)  # largest subnet, BN recalibrated
    fit(model, supernet_loss(config), data, config, args.save_dir, meta, valid_fn=lambda m: probe.evaluate(
        largest(space)), progress=not args.no_progress, device=args.device)


train_main = _entry(_train, train_parser, "fairseq-shiftadd-vision-train")


# -- search -------------------------------------------------------------------------------------------------------
def search_parser() -> argparse.ArgumentParser:
    defaults = EvolutionConfig()
    parser = argparse.ArgumentParser(prog="fairseq-shiftadd-vision-search",
                                     description="Evolutionary search of a trained vision supernet's subnets.")
    _add_data_args(parser)
    parser.add_argument("--supernet", required=True, help="supernet checkpoint (fairseq-shiftadd-vision-train)")
    parser.add_argument("--save-dir", required=True, help="outputs (best.yaml, candidates.csv, search.png, state)")
    parser.add_argument("--constraint", action="append", default=[], metavar="METRIC<=BOUND",
                        help=f"hardware constraint (repeatable); metrics: {', '.join(VISION_METRICS)}")
    parser.add_argument("--multi-objective", default=None, metavar="METRIC[,METRIC]",
                        help="Pareto front of the validation loss vs these metrics (NSGA-II)")
    parser.add_argument("--hardware-profile", default="45nm", help="cost profile: shipped name or YAML path")
    parser.add_argument("--cost-bits", type=int, default=32, help="arithmetic width of the costed image")
    parser.add_argument("--calibration-batches", type=positive_int, default=8, help="BatchNorm recalibration batches")
    for name in ("population", "parents", "mutations", "crossovers", "generations", "seed"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name), help=f"search {name}")
    parser.add_argument("--mutation-prob", type=float, default=defaults.mutation_prob, help="per-gene mutation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def load_supernet(path: str, device: str = "cpu") -> VisionSupernet:
    """The supernet of a ``fairseq-shiftadd-vision-train`` checkpoint (eval mode).

    Raises:
        ValueError: the file is not a vision supernet checkpoint.
    """
    payload = load_checkpoint(path)
    run = payload["meta"]["run"]
    if run.get("kind") != "supernet":
        raise ValueError(f"{path} is not a vision supernet checkpoint (kind={run.get('kind')!r})")
    model = VisionSupernet(VisionSpace.from_dict(run["space"]), run["sharing"])
    model.load_state_dict(payload["model"])
    return model.to(device).eval()


def _search(args: argparse.Namespace) -> None:
    supernet = load_supernet(args.supernet, args.device)
    data, _ = _data_and_space(args, supernet.space)
    metrics = tuple(VISION_METRICS)
    constraints = [parse_constraint(c, metrics) for c in args.constraint]
    pareto = tuple(m.strip() for m in args.multi_objective.split(",")) if args.multi_objective else ()
    unknown = [m for m in pareto if m not in metrics]
    if unknown:
        raise ValueError(f"--multi-objective {unknown} not in allowed values {metrics}")
    config = EvolutionConfig(population=args.population, parents=args.parents, mutations=args.mutations,
                             crossovers=args.crossovers, mutation_prob=args.mutation_prob,
                             generations=args.generations, seed=args.seed, pareto_metrics=pareto)
    fitness = SupernetFitness(supernet, data.train, data.valid, args.calibration_batches, device=args.device)
    cost = VisionCostModel(supernet.space, args.hardware_profile, args.cost_bits)
    result = run_search(supernet, fitness, cost, config, constraints, Path(args.save_dir),
                        x_metric=pareto[0] if pareto else "energy_mj", progress=not args.no_progress)
    for c in result.best:
        logger.info("best: loss %.4f %s | %s", c.fitness, json.dumps(c.metrics), c.subnet.describe())


search_main = _entry(_search, search_parser, "fairseq-shiftadd-vision-search")


# -- retrain / fine-tune ----------------------------------------------------------------------------------------
def retrain_parser() -> argparse.ArgumentParser:
    parser = _training_parser("fairseq-shiftadd-vision-retrain",
                              "Train one subnet as a standalone network, then test it once.")
    parser.add_argument("--subnet", required=True,
                        help="the subnet: a .yaml/.json file (e.g. search/best.yaml), inline JSON, largest or smallest")
    parser.add_argument("--init-from", default=None, help="fine-tune: start from this supernet's weights")
    parser.add_argument("--shift-mode", choices=("q", "ps"), default=DEFAULT_SHIFT_MODE,
                        help="DeepShift mode of shift layers (default: %(default)s)")
    parser.add_argument("--hardware-profile", default="45nm", help="cost profile for results.json")
    return parser


def resolve_subnet(spec: str, space: VisionSpace) -> VisionSubnet:
    """``largest``, ``smallest``, a file or inline JSON of a subnet of ``space`` (one resolver for every command:
    :func:`fairseq_shiftadd.space.resolve_spec`, the grammar of translation subnets too)."""
    return resolve_spec(spec, space, VisionSubnet, {"largest": largest, "smallest": smallest}, check, "--subnet")


def _retrain(args: argparse.Namespace) -> Dict[str, object]:
    supernet = load_supernet(args.init_from, args.device) if args.init_from else None
    data, space = _data_and_space(args, supernet.space if supernet else None)
    subnet = resolve_subnet(args.subnet, space)
    config = _train_config(args)
    torch.manual_seed(args.seed)
    if supernet is not None:
        supernet.set_subnet(subnet)
        recalibrate_batchnorm(supernet, data.train.images[:1024].to(args.device).split(128))
        model = extract_subnet(supernet, subnet, args.shift_mode)
    else:
        model = VisionNet(space, subnet, args.shift_mode)
    meta = {"kind": "subnet", "space": space.to_dict(), "subnet": subnet.to_dict(), "shift_mode": args.shift_mode,
            "dataset": args.dataset, "init_from": args.init_from}
    history = fit(model, classifier_loss(config), data, config, args.save_dir, meta, progress=not args.no_progress,
                  device=args.device)
    best = load_checkpoint(Path(args.save_dir) / "checkpoint_best.pt")
    model.load_state_dict(best["model"])
    test = evaluate(model.eval(), data.test, device=args.device)
    results = {"subnet": subnet.to_dict(), "describe": subnet.describe(), "best_epoch": best["epoch"],
               "valid_accuracy": max(h["valid_accuracy"] for h in history), "test_accuracy": test["accuracy"],
               "test_loss": test["loss"], "seed": args.seed,
               **VisionCostModel(space, args.hardware_profile).metrics(subnet)}
    write_text(Path(args.save_dir) / "results.json", json.dumps(results, indent=2) + "\n")
    logger.info("test accuracy %.4f (best valid epoch %d), energy %.4f mJ", test["accuracy"], best["epoch"],
                results["energy_mj"])
    return results


retrain_main = _entry(_retrain, retrain_parser, "fairseq-shiftadd-vision-retrain")


COMMANDS: Dict[str, Callable[[Optional[Sequence[str]]], None]] = {
    "train": train_main, "search": search_main, "retrain": retrain_main}


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m fairseq_shiftadd.vision.cli {train,search,retrain} ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m fairseq_shiftadd.vision.cli {{{','.join(COMMANDS)}}} [options] (--help)")
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
