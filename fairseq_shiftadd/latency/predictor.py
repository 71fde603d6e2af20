"""A latency predictor trained on the user's own measurements (HAT, arXiv 2005.14187; ShiftAddNAS, 2205.08119).

:class:`LatencyPredictor` is HAT's MLP (3 hidden layers of 400, ReLU) on the features of
:func:`fairseq_shiftadd.space.encode`, standardised with the training split's mean and standard deviation
(stored with the weights). It regresses the standardised ``log(latency_ms)`` by default (``transform="log"``:
the squared error of a log is about the squared relative error, which is what MAPE measures) or the
standardised latency itself (``"linear"``).

:func:`train_predictor` trains it on a CSV of :mod:`.dataset` with Adam on the mean squared error, splits the
rows 80/10/10 at random, keeps the epoch with the lowest validation MAPE (early stopping) and reports the
held-out error on the test split: ``MAPE = 100 * mean(|pred - y| / y)`` and Kendall's tau-b between the
predicted and measured latencies (the ranking is what a search uses).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..atomic import save_torch
from ..space import SearchSpace, SubnetConfig, encode, smallest
from .dataset import read_latency_csv

__all__ = ["TARGETS", "TRANSFORMS", "LatencyPredictor", "PredictorReport", "mape", "kendall_tau", "train_predictor"]

TARGETS = ("total_ms", "encoder_ms", "decoder_ms")
TRANSFORMS = ("log", "linear")
_FORMAT = "fairseq_shiftadd.latency_predictor"
_VERSION = 1


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} not in allowed values {tuple(allowed)}")
    return value


class LatencyPredictor(nn.Module):
    """MLP latency predictor of one search space: ``ms = g^-1(s * MLP((x - mu) / sigma) + m)``.

    ``x = encode(space, sub)``; ``mu, sigma`` (per feature) and ``m, s`` (of the transformed target) are
    buffers set by :meth:`fit_normalisation`; ``g`` is ``log`` or the identity (``transform``).

    Args:
        space: the search space whose subnets it predicts.
        target: the latency column it predicts (one of :data:`TARGETS`).
        transform: ``"log"`` or ``"linear"`` (:data:`TRANSFORMS`).
        hidden: width of the hidden layers.
        layers: number of hidden layers.

    Shape: features ``(N, F)`` -> latencies ``(N,)`` in ms.
    """

    def __init__(
        self, space: SearchSpace, target: str = "total_ms", transform: str = "log", hidden: int = 400, layers: int = 3
    ) -> None:
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden={hidden}, layers={layers}: both must be >= 1")
        self.space = space
        self.target = _choice("target", target, TARGETS)
        self.transform = _choice("transform", transform, TRANSFORMS)
        self.hidden, self.layers = hidden, layers
        num_features = len(encode(space, smallest(space)))
        widths = [num_features] + [hidden] * layers
        blocks: List[nn.Module] = []
        for d_in, d_out in zip(widths, widths[1:]):
            blocks += [nn.Linear(d_in, d_out), nn.ReLU()]
        self.mlp = nn.Sequential(*blocks, nn.Linear(hidden, 1))
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def features(self, subs: Sequence[SubnetConfig]) -> Tensor:
        """``encode(space, sub)`` of each subnet as ``(N, F)`` float32 (``ValueError`` if one is not in the space)."""
        return torch.tensor([encode(self.space, sub) for sub in subs], dtype=torch.float32).reshape(len(subs), -1)

    def to_transformed(self, latency_ms: Tensor) -> Tensor:
        """``g(latency_ms)``."""
        return latency_ms.log() if self.transform == "log" else latency_ms

    @torch.no_grad()
    def fit_normalisation(self, features: Tensor, latency_ms: Tensor) -> None:
        """Set ``mu, sigma`` from ``features (N, F)`` and ``m, s`` from ``g(latency_ms (N,))`` (a constant gets 1)."""
        y = self.to_transformed(latency_ms)
        std = features.std(0, unbiased=False)
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        y_std = y.std(unbiased=False)
        self.target_mean.copy_(y.mean())
        self.target_std.copy_(y_std if y_std > 1e-6 else torch.ones_like(y_std))

    def forward(self, features: Tensor) -> Tensor:
        """Standardised transformed latency ``(N,)`` (the regression output) of ``features (N, F)``."""
        return self.mlp((features - self.feature_mean) / self.feature_std).squeeze(-1)

    def latency_ms(self, features: Tensor) -> Tensor:
        """Predicted latency in ms ``(N,)`` of ``features (N, F)``."""
        y = self.forward(features) * self.target_std + self.target_mean
        return y.exp() if self.transform == "log" else y

    @torch.no_grad()
    def predict(self, subs: Sequence[SubnetConfig]) -> List[float]:
        """Predicted latency (ms) of each subnet, in one batch."""
        if not subs:
            return []
        was_training = self.training
        self.eval()
        try:
            return self.latency_ms(self.features(subs)).tolist()
        finally:
            self.train(was_training)

    def save(self, path: Union[str, Path]) -> None:
        """Write weights, normalisation, space and settings to ``path`` (a torch file, loadable with weights_only)."""
        blob = {
            "format": _FORMAT,
            "version": _VERSION,
            "space": self.space.to_dict(),
            "target": self.target,
            "transform": self.transform,
            "hidden": self.hidden,
            "layers": self.layers,
            "state_dict": self.state_dict(),
        }
        save_torch(blob, path)

    @classmethod
    def load(cls, path: Union[str, Path], space: Optional[SearchSpace] = None) -> "LatencyPredictor":
        """Read a file written by :meth:`save`, in eval mode.

        Args:
            space: if given, the space the predictor must have been trained for.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a latency predictor (corrupt, another kind of file, another version),
                or it was trained for another space than ``space``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"latency predictor not found: {path}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
            raise ValueError(f"{path} is not a readable latency predictor file ({type(err).__name__}: {err})") from None
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a latency predictor file (written by LatencyPredictor.save)")
        if blob.get("version") != _VERSION:
            raise ValueError(f"{path}: latency predictor format version {blob.get('version')!r}, expected {_VERSION}")
        try:
            saved_space = SearchSpace.from_dict(blob["space"])
            settings = [blob[key] for key in ("target", "transform", "hidden", "layers")]
            state = blob["state_dict"]
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path}: malformed latency predictor file ({err})") from None
        if space is not None and space != saved_space:
            raise ValueError(
                f"{path} was trained for space {saved_space.name!r} ({saved_space.to_json()}), "
                f"not for space {space.name!r} ({space.to_json()})"
            )
        try:
            predictor = cls(saved_space, *settings)
            predictor.load_state_dict(state)
        except (RuntimeError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: weights do not fit the saved settings: {err}") from None
        return predictor.eval()


def mape(pred: Tensor, true: Tensor) -> float:
    """Mean absolute percentage error ``100 * mean(|pred - true| / true)``."""
    return float(((pred - true).abs() / true).mean() * 100.0)


def kendall_tau(pred: Tensor, true: Tensor) -> float:
    """Kendall's tau-b between two 1-D tensors (``nan`` if one is constant)."""
    from scipy.stats import kendalltau

    return float(kendalltau(pred.tolist(), true.tolist()).statistic)


@dataclass(frozen=True)
class PredictorReport:
    """Held-out error of a trained predictor (MAPE in percent; tau on the test split)."""

    target: str
    transform: str
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    best_epoch: int
    val_mape: float
    test_mape: float
    test_kendall_tau: float

    def __str__(self) -> str:
        return (
            f"{self.target} ({self.transform}): test MAPE {self.test_mape:.2f} %, "
            f"Kendall tau {self.test_kendall_tau:.3f} on {self.n_test} held-out subnets "
            f"(train {self.n_train}, val {self.n_val}; best epoch {self.best_epoch}/{self.epochs}, "
            f"val MAPE {self.val_mape:.2f} %)"
        )

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def _split_sizes(n: int, split: Tuple[float, float, float]) -> Tuple[int, int, int]:
    if len(split) != 3 or any(s <= 0 for s in split) or not math.isclose(sum(split), 1.0, abs_tol=1e-6):
        raise ValueError(f"split={split!r} must be three positive fractions (train, val, test) summing to 1")
    n_val = max(1, round(n * split[1]))
    n_test = max(2, round(n * split[2]))
    n_train = n - n_val - n_test
    if n_train < 2:
        raise ValueError(f"{n} measured subnets are too few to split {split} (need >= 2 train, 1 val, 2 test)")
    return n_train, n_val, n_test


def train_predictor(
    csv: Union[str, Path],
    space: SearchSpace,
    epochs: int = 300,
    seed: int = 0,
    split: Tuple[float, float, float] = (0.8, 0.1, 0.1),
    *,
    target: str = "total_ms",
    transform: str = "log",
    hidden: int = 400,
    layers: int = 3,
    lr: float = 1e-3,
    batch_size: int = 128,
    patience: Optional[int] = 100,
) -> Tuple[LatencyPredictor, PredictorReport]:
    """Train a :class:`LatencyPredictor` on the measured CSV ``csv`` and report its held-out error.

    The rows are shuffled with ``seed`` and split ``split`` (train, val, test). Each epoch runs Adam
    (``lr``) on the MSE of minibatches of ``batch_size``; the weights of the epoch with the lowest
    validation MAPE are kept, and training stops ``patience`` epochs after it (``None``: never early).

    Raises:
        ValueError: the CSV is of another space, mixes devices or protocols, has a subnet outside
            ``space``, or too few rows to split.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    records = read_latency_csv(csv)
    protocols = {tuple(sorted(r.protocol.items())) for r in records}
    if len(protocols) > 1:
        raise ValueError(f"{csv} mixes measurement settings {sorted(protocols)}: train one predictor per setting")
    if records and records[0].space != space.name:
        raise ValueError(f"{csv} was measured for space {records[0].space!r}, not {space.name!r}")
    n_train, n_val, _ = _split_sizes(len(records), split)
    _choice("target", target, TARGETS)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        predictor = LatencyPredictor(space, target, transform, hidden, layers)
        features = predictor.features([r.subnet for r in records])
        latency = torch.tensor([getattr(r.measurement, target) for r in records], dtype=torch.float32)
        if (latency <= 0).any():
            raise ValueError(f"{csv}: latencies must be positive")
        order = torch.randperm(len(records))
        parts = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
        (x_train, x_val, x_test), (y_train, y_val, y_test) = ([t[p] for p in parts] for t in (features, latency))
        predictor.fit_normalisation(x_train, y_train)
        z_train = (predictor.to_transformed(y_train) - predictor.target_mean) / predictor.target_std
        optimizer = torch.optim.Adam(predictor.parameters(), lr=lr)
        best = (math.inf, 0, copy.deepcopy(predictor.state_dict()))
        for epoch in range(1, epochs + 1):
            predictor.train()
            for batch in torch.randperm(n_train).split(batch_size):
                loss = nn.functional.mse_loss(predictor(x_train[batch]), z_train[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            predictor.eval()
            with torch.no_grad():
                val_mape = mape(predictor.latency_ms(x_val), y_val)
            if val_mape < best[0]:
                best = (val_mape, epoch, copy.deepcopy(predictor.state_dict()))
            elif patience is not None and epoch - best[1] >= patience:
                break
    val_mape, best_epoch, state = best
    predictor.load_state_dict(state)
    predictor.eval()
    with torch.no_grad():
        pred_test = predictor.latency_ms(x_test)
    report = PredictorReport(
        target=target, transform=transform, n_train=n_train, n_val=n_val, n_test=len(y_test), epochs=epochs,
        best_epoch=best_epoch, val_mape=val_mape, test_mape=mape(pred_test, y_test),
        test_kendall_tau=kendall_tau(pred_test, y_test),
    )
    return predictor, report
