"""Translation with a weight-sharing supernet (ShiftAddNAS, arXiv 2205.08119; HAT, arXiv 2005.14187).

Training draws one subnet per optimizer update from ``(seed, update_num)``, so every rank and every
``--update-freq`` micro-batch trains the same subnet; the sandwich rule (``--sandwich``) trains the
largest, the smallest and a sampled subnet on every batch. The optimizer skips every parameter that the
update's subnets did not touch (:class:`~fairseq_shiftadd.inactive.InactiveParameterGuard`: weights, moments,
weight decay), also where fairseq fills missing gradients with zeros (``legacy_ddp``, ``--fp16``). Validation runs a fixed list of
representative subnets and logs each one's loss as ``loss_<name>``; the first one's loss is the
validation ``loss`` (checkpoint selection). With ``--subnet`` a supernet trains (fine-tunes) one fixed
subnet. A model without ``set_subnet`` (a standalone subnet) trains as in plain translation.
"""

import math
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from fairseq import metrics
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from ..inactive import InactiveParameterGuard
from ..models.supernet import load_subnet
from ..space import SubnetConfig, largest, sample, smallest, subnet_seed

__all__ = ["SupernetTranslationConfig", "SupernetTranslationTask"]

NAMED_SUBNETS = {"largest": largest, "smallest": smallest}


@dataclass
class SupernetTranslationConfig(TranslationConfig):
    subnet: Optional[str] = field(
        default=None,
        metadata={"help": "train/evaluate only this subnet: 'largest', 'smallest', a .json/.yaml file or inline JSON"},
    )
    sandwich: bool = field(
        default=False, metadata={"help": "train largest + smallest + one sampled subnet on every batch"}
    )
    valid_subnets: str = field(
        default="largest,smallest",
        metadata={"help": "comma-separated subnets validated separately: 'largest', 'smallest' or config files"},
    )
    seed: int = II("common.seed")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    while hasattr(model, "module") and not hasattr(model, "set_subnet"):
        model = model.module
    return model


class SupernetTranslationTask(TranslationTask):
    cfg: SupernetTranslationConfig

    def __init__(self, cfg: SupernetTranslationConfig, src_dict, tgt_dict) -> None:
        super().__init__(cfg, src_dict, tgt_dict)
        self.fixed_subnet_spec = cfg.subnet
        self.fixed_subnet: Optional[SubnetConfig] = None
        self.inactive_guard = InactiveParameterGuard()
        if cfg.subnet and cfg.subnet not in NAMED_SUBNETS:
            self.fixed_subnet = load_subnet(cfg.subnet)

    # -- subnets ------------------------------------------------------------------------------
    def valid_subnets(self, model) -> List[Tuple[str, SubnetConfig]]:
        """The (name, config) pairs validated separately; the fixed subnet alone if one is set."""
        if self.fixed_subnet is not None:
            return [("subnet", self.fixed_subnet)]
        subnets = []
        for spec in filter(None, (s.strip() for s in self.cfg.valid_subnets.split(","))):
            if spec in NAMED_SUBNETS:
                subnets.append((spec, NAMED_SUBNETS[spec](model.space)))
            else:
                name = spec.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                subnets.append((name, load_subnet(spec)))
        if not subnets:
            raise ValueError("--valid-subnets names no subnet")
        return subnets

    def train_subnets(self, model, update_num: int) -> List[SubnetConfig]:
        """The subnets trained on this update's batches."""
        if self.fixed_subnet is not None:
            return [self.fixed_subnet]
        drawn = sample(model.space, random.Random(subnet_seed(self.cfg.seed, update_num)))
        if self.cfg.sandwich:
            return [largest(model.space), smallest(model.space), drawn]
        return [drawn]

    # -- fairseq hooks ----------------------------------------------------------------------------
    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        if self.fixed_subnet_spec in NAMED_SUBNETS and hasattr(model, "space"):
            self.fixed_subnet = NAMED_SUBNETS[self.fixed_subnet_spec](model.space)
        if self.fixed_subnet is not None and hasattr(model, "set_subnet"):
            model.set_subnet(self.fixed_subnet)
        return model

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        supernet = _unwrap(model)
        if not hasattr(supernet, "set_subnet"):
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        model.train()
        model.set_num_updates(update_num)
        teacher = None
        if getattr(criterion, "distill_weight", 0.0):
            supernet.set_subnet(largest(supernet.space))
            with torch.no_grad():
                teacher = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True).detach()
        total_loss, logging_output = 0.0, {}
        for subnet in self.train_subnets(supernet, update_num):
            supernet.set_subnet(subnet)
            kwargs = {"teacher_lprobs": teacher} if teacher is not None else {}
            loss, sample_size, log = criterion(model, sample, **kwargs)
            if ignore_grad:
                loss = loss * 0
            optimizer.backward(loss)
            total_loss = total_loss + loss.detach()
            for key, value in log.items():
                logging_output[key] = value if key in ("ntokens", "nsentences", "sample_size") else (
                    logging_output.get(key, 0) + value
                )
        self.inactive_guard.record(supernet, update_num)
        self.inactive_guard.attach(optimizer)
        return total_loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        supernet = _unwrap(model)
        if not hasattr(supernet, "set_subnet"):
            return super().valid_step(sample, model, criterion)
        subnets = self.valid_subnets(supernet)
        results: Dict[str, Any] = {}
        for name, subnet in reversed(subnets):  # the first one ends active (used by --eval-bleu)
            supernet.set_subnet(subnet)
            loss, sample_size, log = super().valid_step(sample, model, criterion)
            results[name] = (loss, sample_size, log)
        loss, sample_size, logging_output = results[subnets[0][0]]
        for name, (sub_loss, _, _) in results.items():
            logging_output[f"loss_{name}"] = sub_loss.data
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion) -> None:
        super().reduce_metrics(logging_outputs, criterion)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        keys = sorted({key for log in logging_outputs for key in log if key.startswith("loss_")})
        for key in keys:
            total = sum(log.get(key, 0) for log in logging_outputs)
            if sample_size:
                metrics.log_scalar(key, float(total) / sample_size / math.log(2), sample_size, round=3)
