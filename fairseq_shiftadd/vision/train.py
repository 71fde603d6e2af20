"""Training of vision supernets and standalone subnets: one loop, resumable, seeded (ShiftAddNAS, arXiv 2205.08119).

:func:`fit` runs AdamW (weight decay on weight tensors only: :func:`parameter_groups`) with a linear warm-up and a
cosine decay to 0 (per update), mini-batches drawn from a
permutation seeded by ``(seed, epoch)``, optional random-translation / horizontal-flip augmentation, and after
every epoch writes ``checkpoint_last.pt`` atomically (model, optimizer, epoch, history, seeds); a restarted
run with the same ``save_dir`` continues from it. The best validation accuracy so far is kept in
``checkpoint_best.pt``. What one update computes is the caller's ``loss_fn(model, x, y, update)``:

* supernet (:func:`supernet_loss`): one subnet sampled with ``random.Random(seed * 1_000_003 + update)`` (the
  same subnet whatever the restart), or with ``sandwich`` the largest, the smallest and a sampled subnet
  (gradients summed), plus ``sharing_reg_weight`` x the heterogeneous-sharing regulariser;
* standalone network: cross-entropy.
No fairseq.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..atomic import save_torch
from ..ops.validate import positive_int
from ..progress import progress as progress_bar
from .data import ImageData, ImageSplit
from .space import VisionSubnet, largest, sample, smallest

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "parameter_groups", "fit", "evaluate", "supernet_loss", "classifier_loss", "subnet_rng",
           "train_batches", "load_checkpoint"]

LossFn = Callable[[nn.Module, Tensor, Tensor, int], Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run.

    Args:
        epochs: passes over the training split.
        batch_size: images per update.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay of the weight tensors (not of biases, norm scales and other vectors).
        warmup_epochs: linear warm-up length (then cosine decay to 0).
        label_smoothing: cross-entropy label smoothing.
        augment_shift: random translation by up to this many pixels (zero fill); 0 = off.
        augment_flip: random horizontal flips.
        seed: seeds the initialisation, the batch order, the augmentation and the sampled subnets.
        sandwich: supernet only: train the largest, the smallest and a sampled subnet per update.
        sharing_reg_weight: supernet only: weight of the heterogeneous-sharing regulariser (the paper's 10).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment_shift: int = 0
    augment_flip: bool = False
    seed: int = 1
    sandwich: bool = False
    sharing_reg_weight: float = 10.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            positive_int(name, getattr(self, name))
        for name in ("lr", "weight_decay", "warmup_epochs", "label_smoothing", "sharing_reg_weight",
                     "augment_shift"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


def subnet_rng(seed: int, update: int) -> random.Random:
    """The generator that draws the subnet of update ``update`` (identical across restarts and ranks)."""
    return random.Random(seed * 1_000_003 + update)


def train_batches(split: ImageSplit, config: TrainConfig, epoch: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """Shuffled mini-batches of one epoch (the last one partial), augmented as configured; seeded by
    ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(len(split), generator=generator)
    for start in range(0, len(order), config.batch_size):
        index = order[start: start + config.batch_size]
        yield _augment(split.images[index], config, generator), split.labels[index]


def _augment(x: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """Per image: translate by up to ``augment_shift`` pixels (zero fill) and flip horizontally at p = 1/2."""
    if config.augment_shift:
        pad = config.augment_shift
        padded = F.pad(x, (pad, pad, pad, pad))
        offsets = torch.randint(0, 2 * pad + 1, (x.shape[0], 2), generator=generator).tolist()
        size_h, size_w = x.shape[2:]
        x = torch.stack([padded[i, :, dy: dy + size_h, dx: dx + size_w] for i, (dy, dx) in enumerate(offsets)])
    if config.augment_flip:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


@torch.no_grad()
def evaluate(forward: Callable[[Tensor], Tensor], split: ImageSplit, batch_size: int = 256,
             device: str | torch.device = "cpu") -> Dict[str, float]:
    """Mean cross-entropy ``loss`` and ``accuracy`` (fraction) of ``forward`` on ``split`` (batches on ``device``)."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(split), batch_size):
        x, y = split.images[start: start + batch_size].to(device), split.labels[start: start + batch_size].to(device)
        logits = forward(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    return {"loss": total_loss / len(split), "accuracy": correct / len(split)}


def classifier_loss(config: TrainConfig) -> LossFn:
    """Cross-entropy of a standalone network."""
    return lambda model, x, y, update: F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)


def supernet_loss(config: TrainConfig) -> LossFn:
    """One sampled subnet per update (``sandwich``: largest + smallest + sampled, losses summed, so their three
    graphs are alive together), plus ``sharing_reg_weight`` x the heterogeneous-sharing regulariser."""

    def loss(model: nn.Module, x: Tensor, y: Tensor, update: int) -> Tensor:
        subnet = sample(model.space, subnet_rng(config.seed, update))
        subnets: List[VisionSubnet] = [subnet]
        if config.sandwich:
            subnets = [largest(model.space), smallest(model.space), subnet]
        total = sum(F.cross_entropy(model(x, s), y, label_smoothing=config.label_smoothing) for s in subnets)
        return total + config.sharing_reg_weight * model.sharing_regulariser(subnets)

    return loss


def _lr_at(update: int, total: int, warmup: int, peak: float) -> float:
    if update < warmup:
        return peak * (update + 1) / warmup
    progress = (update - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))




def load_checkpoint(path: str | Path) -> Dict[str, Any]:
    """A checkpoint written by :func:`fit` (trusted files only: it is a pickle).

    Raises:
        ValueError: the file is missing or is not such a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ValueError(f"checkpoint {str(path)!r} could not be read: {err}") from None
    if not isinstance(payload, dict) or "model" not in payload or "meta" not in payload:
        raise ValueError(f"{str(path)!r} is not a vision checkpoint (expected keys 'model' and 'meta')")
    return payload


def parameter_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """AdamW's parameter groups: ``weight_decay`` on tensors of two or more dims (the linear, convolution and shared
    operator weights), none on biases, norm scales and other vectors (the DeiT / timm convention: pulling a norm's
    scale or a remap's slopes toward 0 is no regularisation). Parameters that need no gradient are left out."""
    trained = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trained if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trained if p.dim() < 2], "weight_decay": 0.0}]


def fit(model: nn.Module, loss_fn: LossFn, data: ImageData, config: TrainConfig, save_dir: str | Path,
        meta: Dict[str, Any], valid_fn: Optional[Callable[[nn.Module], Dict[str, float]]] = None,
        progress: bool = True, device: str | torch.device = "cpu") -> List[Dict[str, float]]:
    """Train ``model`` (resuming from ``save_dir/checkpoint_last.pt`` if present); returns the per-epoch history.

    ``meta`` (JSON-able: space, subnet, sharing, ...) is stored in every checkpoint with the config, so a
    checkpoint rebuilds its model alone. ``valid_fn(model)`` returns the validation metrics (default: the
    model's own loss and accuracy on ``data.valid``, eval mode). The model and every batch go to ``device``.
    """
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    last, best = save_dir / "checkpoint_last.pt", save_dir / "checkpoint_best.pt"
    model.to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total, warmup = config.epochs * steps_per_epoch, max(1, int(config.warmup_epochs * steps_per_epoch))
    history: List[Dict[str, float]] = []
    start_epoch = 0
    if last.is_file():
        state = load_checkpoint(last)
        if state["meta"].get("config") != dataclasses.asdict(config) or state["meta"].get("run") != meta:
            raise ValueError(f"{last} was written by another run (other settings); use another --save-dir")
        model.load_state_dict(state["model"])
        if len(state["optimizer"]["param_groups"]) != len(optimizer.param_groups):
            raise ValueError(f"{last} was written by an older version (weight decay on every parameter); "
                             f"use another --save-dir")
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        logger.info("resuming %s after epoch %d", last, start_epoch)
    valid_fn = valid_fn or (lambda m: evaluate(lambda x: m.eval()(x), data.valid, device=device))
    best_accuracy = max((h["valid_accuracy"] for h in history), default=-1.0)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        started, losses = time.time(), []
        bar = progress_bar(train_batches(data.train, config, epoch), total=steps_per_epoch, enabled=progress,
                           desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for step, (x, y) in enumerate(bar):
            x, y = x.to(device), y.to(device)
            update = epoch * steps_per_epoch + step
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(update, total, warmup, config.lr)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y, update)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        metrics = valid_fn(model)
        record = {"epoch": epoch + 1, "train_loss": sum(losses) / len(losses), "valid_loss": metrics["loss"],
                  "valid_accuracy": metrics["accuracy"], "seconds": time.time() - started}
        history.append(record)
        logger.info("epoch %d %s", epoch + 1, json.dumps({k: round(v, 4) for k, v in record.items()}))
        payload = {"model": model.state_dict(), "meta": {"config": dataclasses.asdict(config), "run": meta},
                   "epoch": epoch + 1, "history": history}
        if record["valid_accuracy"] > best_accuracy:
            best_accuracy = record["valid_accuracy"]
            save_torch(payload, best)
        save_torch({**payload, "optimizer": optimizer.state_dict()}, last)
    return history
