"""Fitness of subnets with inherited supernet weights: validation loss (the paper's) or BLEU.

:class:`ValidationFitness` loads a trained ``shiftadd_supernet`` checkpoint with its task, builds the
validation batches once (the first ``max_sentences`` sentences of the subset, ordered by length and batched
by ``max_tokens`` / ``batch_size``: the same batches for every subnet and every run), and for each subnet
runs ``set_subnet`` and then, in eval mode without gradients:

* ``loss``: ``sum(label-smoothed CE) / ntokens / ln 2`` over the batches (base 2, as fairseq logs
  ``valid_loss``; the criterion's training-only terms, the sharing regulariser and distillation, are left out);
* ``bleu``: detokenized corpus sacreBLEU of beam-search translations (``--beam``, ``--post-process``).
"""

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import sacrebleu
import torch
from fairseq import checkpoint_utils, utils
from ..progress import progress

from .. import compat
from ..space import SubnetConfig

logger = logging.getLogger(__name__)

__all__ = ["OBJECTIVES", "ValidationFitness"]

OBJECTIVES = ("loss", "bleu")


class ValidationFitness:
    """Batch fitness (``fitness(subs) -> [value, ...]``) of subnets of a trained supernet.

    Args:
        checkpoint: the supernet checkpoint.
        objective: ``"loss"`` or ``"bleu"``.
        data: data directory overriding the one recorded in the checkpoint (``None``: recorded).
        subset: the split to evaluate on (``valid``).
        max_sentences: evaluate on the first N sentences of the subset (``None``: all).
        max_batches: and at most this many batches (``None``: all).
        max_tokens, batch_size: batching (at least one must be set).
        generation: fairseq generation options for ``bleu`` (beam, lengths, ...); ``None`` for ``loss``.
        post_process: sub-word removal for ``bleu`` (e.g. ``"sentencepiece"``).
        device: ``"cpu"`` or ``"cuda"``.
        progress: show a progress bar over each batch of subnets.

    Raises:
        FileNotFoundError: no checkpoint file.
        ValueError: not a supernet checkpoint, an unknown objective, or no batch to evaluate.
    """

    def __init__(
        self,
        checkpoint: Path,
        objective: str = "loss",
        data: Optional[str] = None,
        subset: str = "valid",
        max_sentences: Optional[int] = None,
        max_batches: Optional[int] = None,
        max_tokens: Optional[int] = None,
        batch_size: Optional[int] = None,
        generation: Any = None,
        post_process: Optional[str] = None,
        device: str = "cpu",
        progress: bool = False,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r} not in allowed values {OBJECTIVES}")
        if objective == "bleu" and generation is None:
            raise ValueError("objective='bleu' needs generation options (beam, ...)")
        if max_tokens is None and batch_size is None:
            raise ValueError("set max_tokens or batch_size")
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"supernet checkpoint not found: {checkpoint}")
        compat.install()
        overrides = {"data": data} if data else {}
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], arg_overrides=overrides)
        model = models[0]
        if not hasattr(model, "set_subnet"):
            raise ValueError(f"{checkpoint} is not a supernet checkpoint (model {type(model).__name__})")
        self.model = model.to(device).eval()
        self.model_cfg = cfg.model  # the supernet's model config (the cost model reads its quant_bits)
        self.task = task
        self.criterion = task.build_criterion(cfg.criterion)
        self.objective = objective
        self.post_process = post_process
        self.device = device
        self.progress = progress
        self.space = model.space
        self.generator = task.build_generator([self.model], generation) if objective == "bleu" else None
        self.batches = self._batches(subset, max_sentences, max_batches, max_tokens, batch_size)

    def _batches(
        self,
        subset: str,
        max_sentences: Optional[int],
        max_batches: Optional[int],
        max_tokens: Optional[int],
        batch_size: Optional[int],
    ) -> List[Dict[str, Any]]:
        self.task.load_dataset(subset, combine=False, epoch=1)
        dataset = self.task.dataset(subset)
        count = len(dataset) if max_sentences is None else min(max_sentences, len(dataset))
        order = dataset.ordered_indices()
        order = order[order < count]
        max_positions = utils.resolve_max_positions(self.task.max_positions(), self.model.max_positions())
        order, ignored = dataset.filter_indices_by_size(order, max_positions)
        if len(ignored):
            logger.warning("%d sentences of %s longer than %s are skipped", len(ignored), subset, max_positions)
        batches = dataset.batch_by_size(order, max_tokens=max_tokens, max_sentences=batch_size)
        batches = batches[:max_batches] if max_batches is not None else batches
        if not batches:
            raise ValueError(f"no batch to evaluate in subset {subset!r} (max_sentences={max_sentences})")
        samples = [dataset.collater([dataset[int(i)] for i in batch]) for batch in batches]
        return [utils.move_to_cuda(s) if self.device.startswith("cuda") else s for s in samples]

    @property
    def sentences(self) -> int:
        """Sentences evaluated per subnet."""
        return sum(s["nsentences"] for s in self.batches)

    @torch.no_grad()
    def loss(self, sub: SubnetConfig) -> float:
        """Validation loss of ``sub``: label-smoothed CE per target token, base 2."""
        self.model.set_subnet(sub)
        total, ntokens = 0.0, 0
        for sample in self.batches:
            net_output = self.model(**sample["net_input"])
            loss, _ = self.criterion.compute_loss(self.model, net_output, sample, reduce=True)
            total += float(loss)
            ntokens += int(sample["ntokens"])
        return total / ntokens / math.log(2)

    @torch.no_grad()
    def bleu(self, sub: SubnetConfig) -> float:
        """Detokenized corpus sacreBLEU of ``sub``'s beam-search translations."""
        self.model.set_subnet(sub)
        tgt_dict = self.task.target_dictionary
        hyps: List[str] = []
        refs: List[str] = []
        for sample in self.batches:
            outputs = self.task.inference_step(self.generator, [self.model], sample)
            for i, hypos in enumerate(outputs):
                hyps.append(tgt_dict.string(hypos[0]["tokens"].int().cpu(), self.post_process))
                ref = utils.strip_pad(sample["target"][i], tgt_dict.pad()).int().cpu()
                refs.append(tgt_dict.string(ref, self.post_process, escape_unk=True))
        return float(sacrebleu.corpus_bleu(hyps, [refs]).score)

    def __call__(self, subs: Sequence[SubnetConfig]) -> List[float]:
        evaluate = self.loss if self.objective == "loss" else self.bleu
        return [evaluate(s) for s in progress(subs, desc=f"valid {self.objective}", leave=False,
                                              enabled=self.progress)]
