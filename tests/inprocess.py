"""fairseq training and decoding in the test process (a ``fairseq-train`` subprocess costs its start-up, often
longer than a few updates of a tiny model): the same ``Trainer``, checkpoint format and generator the CLIs use."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import torch
from fairseq import checkpoint_utils, options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer


def train_updates(argv: Sequence[str], updates: int, save_dir: Path, sentences: int = 8) -> List[Path]:
    """Parse ``argv`` as ``fairseq-train`` does, run ``updates`` updates of ``sentences`` training pairs each, and
    save a checkpoint after each: ``save_dir/checkpoint_1_<update>.pt`` (fairseq's own ``Trainer.save_checkpoint``).

    Returns the checkpoint paths in update order.
    """
    args = options.parse_args_and_arch(options.get_training_parser(), list(argv))
    cfg = convert_namespace_to_omegaconf(args)
    utils.import_user_module(cfg.common)
    torch.manual_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    dataset = task.dataset("train")
    save_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for update in range(1, updates + 1):
        batch = dataset.collater([dataset[i] for i in range(sentences * (update - 1), sentences * update)])
        trainer.train_step([batch])
        path = save_dir / f"checkpoint_1_{update}.pt"
        trainer.consolidate_optimizer()  # as checkpoint_utils.save_checkpoint does before saving
        trainer.save_checkpoint(str(path), {"train_iterator": {"epoch": 1}})
        paths.append(path)
    return paths


def decode(checkpoint: Path, subset: str, sentences: int, output: Path, beam: int = 4, lenpen: float = 0.6,
           max_len_b: int = 12) -> None:
    """Beam-search the first ``sentences`` of ``subset`` with ``checkpoint`` and write them as the ``D-<id>`` lines of
    ``fairseq-generate`` (sentencepiece removed) to ``output``."""
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], strict=True)
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    batch = dataset.collater([dataset[i] for i in range(sentences)])
    cfg.generation.beam, cfg.generation.lenpen = beam, lenpen
    cfg.generation.max_len_a, cfg.generation.max_len_b = 0, max_len_b  # an untrained model: keep the beams short
    generator = task.build_generator(models, cfg.generation)
    hypos = task.inference_step(generator, models, batch)
    log = []
    for index, best in zip(batch["id"].tolist(), (h[0] for h in hypos)):
        text = task.target_dictionary.string(best["tokens"], "sentencepiece")
        log.append(f"D-{index}\t{best['score']:.4f}\t{text}")
    output.write_text("\n".join(log) + "\n", encoding="utf-8")
