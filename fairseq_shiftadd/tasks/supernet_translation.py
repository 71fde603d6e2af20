"""Translation with a weight-sharing supernet (ShiftAddNAS, arXiv 2205.08119; HAT, arXiv 2005.14187).

Training draws one subnet per optimizer update from ``(seed, update_num)``, so every rank and every ``--update-freq``
micro-batch trains the same subnet; the sandwich rule (``--sandwich``) trains the largest, the smallest and a sampled
subnet on every batch, and the operator sandwich (``--sandwich-operators``) adds the largest net with every layer's
operators drawn at random (:func:`~fairseq_shiftadd.space.sample_operators`). The optimizer skips every parameter that
the update's subnets did not touch (:class:`~fairseq_shiftadd.inactive.InactiveParameterGuard`: weights, moments, weight
decay), also where fairseq fills missing gradients with zeros (``legacy_ddp``, ``--fp16``). Validation runs a fixed list
of representative subnets and logs each one's loss as ``loss_<name>``; the first one's loss is the validation ``loss``
(checkpoint selection). With ``--subnet`` a supernet trains (fine-tunes) one fixed subnet. A model without
``set_subnet`` (a standalone subnet) trains as in plain translation.

``--subnet`` belongs to the model (:class:`~fairseq_shiftadd.models.supernet.SupernetConfig`, and the
standalone subnet's config): fairseq gives a flag to every config with a field of that name, so the task has
none and reads the model's active subnet. Every subnet spec is checked before training starts: files and
inline JSON of ``--valid-subnets`` when the task is set up, and every spec against the model's space when the
model is built (:func:`~fairseq_shiftadd.space.resolve_subnet`, one line naming the option).
"""

import math
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from fairseq import metrics
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from ..cli_errors import InputError
from ..inactive import InactiveParameterGuard
from ..space import (
    NAMED_SUBNETS,
    SearchSpace,
    SubnetConfig,
    largest,
    parse_subnet_spec,
    resolve_subnet,
    sample,
    sample_operators,
    smallest,
    subnet_seed,
)

__all__ = ["SupernetTranslationConfig", "SupernetTranslationTask"]

VALID_SUBNETS_OPTION = "--valid-subnets"
SANDWICH_OPERATORS_OPTION = "--sandwich-operators"


@dataclass
class SupernetTranslationConfig(TranslationConfig):
    sandwich: bool = field(
        default=False, metadata={"help": "train largest + smallest + one sampled subnet on every batch"}
    )
    sandwich_operators: bool = field(
        default=False,
        metadata={"help": "with --sandwich: also train the largest subnet with every layer's token mixer and FFN "
                          "operator drawn at random (4 subnets per batch), so full-size hybrids train every update"},
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
        """Raises: InputError: ``--valid-subnets`` names no subnet or a spec that does not parse;
        ``--sandwich-operators`` without ``--sandwich``."""
        super().__init__(cfg, src_dict, tgt_dict)
        if cfg.sandwich_operators and not cfg.sandwich:
            raise InputError(f"{SANDWICH_OPERATORS_OPTION} adds a fourth subnet to the sandwich rule: "
                             "give --sandwich too")
        self.fixed_subnet: Optional[SubnetConfig] = None  # set from the model's --subnet by build_model
        self.inactive_guard = InactiveParameterGuard()
        self._valid_specs = [s.strip() for s in cfg.valid_subnets.split(",") if s.strip()]
        if not self._valid_specs:
            raise InputError(f"{VALID_SUBNETS_OPTION} {cfg.valid_subnets!r} names no subnet "
                             "(allowed: comma-separated largest, smallest, .json/.yaml files)")
        for spec in self._valid_specs:
            parse_subnet_spec(spec, VALID_SUBNETS_OPTION)
        self._valid_subnets: Dict[SearchSpace, List[Tuple[str, SubnetConfig]]] = {}

    # -- subnets ------------------------------------------------------------------------------
    def valid_subnets(self, model) -> List[Tuple[str, SubnetConfig]]:
        """The (name, config) pairs validated separately; the fixed subnet alone if one is set.

        Raises:
            InputError: a ``--valid-subnets`` spec is not in ``model.space`` (naming the option and field).
        """
        if self.fixed_subnet is not None:
            return [("subnet", self.fixed_subnet)]
        if model.space not in self._valid_subnets:
            self._valid_subnets[model.space] = [
                (spec if spec in NAMED_SUBNETS else spec.rsplit("/", 1)[-1].rsplit(".", 1)[0],
                 resolve_subnet(spec, model.space, VALID_SUBNETS_OPTION))
                for spec in self._valid_specs
            ]
        return self._valid_subnets[model.space]

    def train_subnets(self, model, update_num: int) -> List[SubnetConfig]:
        """The subnets trained on this update's batches: the sampled one; with ``--sandwich`` the largest, the
        smallest and the sampled one; with ``--sandwich-operators`` also the largest with random operators."""
        if self.fixed_subnet is not None:
            return [self.fixed_subnet]
        rng = random.Random(subnet_seed(self.cfg.seed, update_num))
        drawn = sample(model.space, rng)
        if not self.cfg.sandwich:
            return [drawn]
        biggest = largest(model.space)
        subnets = [biggest, smallest(model.space), drawn]
        if self.cfg.sandwich_operators:
            subnets.append(sample_operators(model.space, biggest, rng))
        return subnets

    # -- fairseq hooks ----------------------------------------------------------------------------
    def build_model(self, cfg, from_checkpoint: bool = False):
        """The model; for a supernet also its fixed subnet (``--subnet``) and the validated subnets, checked now.

        Raises:
            InputError: a subnet spec does not fit the model's space (before any update runs).
        """
        model = super().build_model(cfg, from_checkpoint)
        if hasattr(model, "set_subnet"):
            if getattr(cfg, "subnet", None):
                self.fixed_subnet = model.subnet  # the model resolved and activated it
            self.valid_subnets(model)
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
