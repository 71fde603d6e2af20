"""Evolutionary search of vision subnets with the shared engine (ShiftAddNAS, arXiv 2205.08119).

:class:`VisionDomain` makes a :class:`~.space.VisionSpace` a :class:`~..search.domain.SearchDomain`, so
:class:`~..search.evolution.EvolutionarySearch` (constraints, NSGA-II fronts, resumable state) and
:mod:`..search.report` (best.yaml / front, candidates.csv, search.png) work unchanged. The fitness
(:class:`SupernetFitness`) is the validation loss of a subnet with inherited supernet weights, after its
BatchNorm statistics are re-estimated on training batches (a supernet's statistics mix many subnets). Unlike
the original vision search, the cost metrics (:class:`~.cost.VisionCostModel`) can constrain the search.
No fairseq.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import torch
from torch import Tensor

from ..search.constraints import Constraint
from ..search.evolution import EvolutionConfig, EvolutionarySearch, SearchResult
from ..search.report import write_report
from .cost import VisionCostModel
from .data import ImageSplit
from .models import VisionSupernet, recalibrate_batchnorm
from .space import VisionSpace, VisionSubnet, crossover, mutate, sample
from .train import evaluate

__all__ = ["VisionDomain", "SupernetFitness", "run_search"]


@dataclass(frozen=True)
class VisionDomain:
    """A vision search space as a :class:`~..search.domain.SearchDomain`."""

    space: VisionSpace

    @property
    def name(self) -> str:
        return self.space.name

    def to_dict(self) -> Dict[str, Any]:
        return self.space.to_dict()

    def sample(self, rng: random.Random) -> VisionSubnet:
        return sample(self.space, rng)

    def mutate(self, config: VisionSubnet, rng: random.Random, prob: float) -> VisionSubnet:
        return mutate(self.space, config, rng, prob)

    def crossover(self, a: VisionSubnet, b: VisionSubnet, rng: random.Random) -> VisionSubnet:
        return crossover(self.space, a, b, rng)

    def config_from_dict(self, data: Mapping[str, Any]) -> VisionSubnet:
        return VisionSubnet.from_dict(data)


class SupernetFitness:
    """Validation loss of subnets with inherited weights (BatchNorm recalibrated per subnet).

    Args:
        supernet: the trained supernet (its weights are not changed; its BatchNorm statistics are).
        train: images for the recalibration (the first ``calibration_batches * batch_size``).
        valid: the validation split.
        calibration_batches: recalibration batches per subnet.
        batch_size: images per batch.
        device: where the supernet lives (batches are moved there).
    """

    def __init__(self, supernet: VisionSupernet, train: ImageSplit, valid: ImageSplit,
                 calibration_batches: int = 8, batch_size: int = 128, device: str | torch.device = "cpu") -> None:
        self.supernet, self.valid, self.batch_size, self.device = supernet, valid, batch_size, device
        images = train.images[: calibration_batches * batch_size].to(device)
        self.calibration: List[Tensor] = list(images.split(batch_size))

    def evaluate(self, subnet: VisionSubnet) -> Dict[str, float]:
        """``loss`` and ``accuracy`` of ``subnet`` on the validation split."""
        self.supernet.set_subnet(subnet)
        recalibrate_batchnorm(self.supernet, self.calibration)
        return evaluate(self.supernet, self.valid, self.batch_size, self.device)

    def __call__(self, subnets: Sequence[VisionSubnet]) -> List[float]:
        return [self.evaluate(s)["loss"] for s in subnets]


def run_search(supernet: VisionSupernet, fitness: SupernetFitness, cost: VisionCostModel, config: EvolutionConfig,
               constraints: Sequence[Constraint], out_dir: Path, x_metric: str = "energy_mj",
               progress: bool = True) -> SearchResult:
    """Run (or resume, from ``out_dir/state.json``) the search and write its report into ``out_dir``."""
    out_dir = Path(out_dir)
    search = EvolutionarySearch(VisionDomain(supernet.space), config, fitness, cost.metrics, constraints,
                                state_path=out_dir / "state.json", progress=progress)
    result = search.run()
    write_report(out_dir, result, "loss", bool(config.pareto_metrics), x_metric, constraints)
    return result
