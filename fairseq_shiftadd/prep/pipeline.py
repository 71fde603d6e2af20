"""Dataset-independent preparation: parallel text -> joint sentencepiece -> fairseq binary data.

Layout of an output directory ``out``::

    settings.json                        the settings the outputs were built with
    raw/{train,valid,test}.{src,tgt}     cleaned text (untokenised: the valid/test targets are BLEU references)
    sentencepiece/spm.{model,vocab}      joint sentencepiece model over the training text of both languages
    spm-text/{train,valid,test}.{src,tgt} sentencepiece pieces
    data-bin/                            ``fairseq-preprocess --joined-dictionary`` output

Every step writes atomically and is skipped when its output exists (:mod:`.steps`); ``settings.json``
makes a re-run with different settings fail instead of silently reusing outputs built otherwise.
Dataset modules (:mod:`.multi30k`, :mod:`.wmt14`, :mod:`.iwslt14`) supply the pairs of each split.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .. import cli_types
from ..cli_errors import add_debug_flag
from ..ops.validate import int_in_range, positive_int
from ..progress import progress

from .corpus import Pair
from .steps import atomic_output

logger = logging.getLogger(__name__)

__all__ = ["SPLITS", "MODEL_TYPES", "SubwordConfig", "add_arguments", "add_cleaning_arguments", "subword_options",
           "subword_settings", "record_settings", "limit", "write_raw", "train_sentencepiece", "encode",
           "binarize", "build"]

SPLITS = ("train", "valid", "test")
MODEL_TYPES = ("unigram", "bpe", "char", "word")
MIN_VOCAB_SIZE = 100
"""The smallest sentencepiece vocabulary a dataset may ask for."""
_BATCH = 10_000


@dataclass(frozen=True)
class SubwordConfig:
    """Joint sentencepiece model settings.

    Args:
        vocab_size: number of pieces (the fairseq dictionary adds 4 specials and pads to a multiple of 8).
        model_type: one of :data:`MODEL_TYPES`.
        character_coverage: share of characters covered by the alphabet (1.0 for European languages).
        input_sentence_size: sentences sampled (reservoir, shuffled) to train on; bounds time and memory
            on large corpora such as WMT14.
        num_threads: sentencepiece training and encoding threads.
    """

    vocab_size: int = 8000
    model_type: str = "unigram"
    character_coverage: float = 1.0
    input_sentence_size: int = 1_000_000
    num_threads: int = 2

    def __post_init__(self) -> None:
        int_in_range("vocab_size", self.vocab_size, MIN_VOCAB_SIZE)
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if not 0 < self.character_coverage <= 1:
            raise ValueError(f"character_coverage must be in (0, 1], got {self.character_coverage}")
        positive_int("input_sentence_size", self.input_sentence_size)
        positive_int("num_threads", self.num_threads)


def add_arguments(parser: argparse.ArgumentParser, vocab_size: int) -> None:
    """The CLI flags shared by every dataset: sentencepiece settings, ``--max-train``, ``--workers``."""
    add = parser.add_argument
    add("--out", type=Path, required=True, help="output directory")
    add("--vocab-size", type=cli_types.int_at_least(MIN_VOCAB_SIZE), default=vocab_size,
        help="sentencepiece pieces (%(default)s)")
    add("--model-type", choices=MODEL_TYPES, default="unigram", help="sentencepiece model (%(default)s)")
    add("--character-coverage", type=float, default=1.0, help="sentencepiece alphabet coverage (%(default)s)")
    add("--input-sentence-size", type=cli_types.positive_int, default=SubwordConfig.input_sentence_size,
        help="training sentences sampled for sentencepiece (%(default)s)")
    add("--threads", type=cli_types.positive_int, default=2, help="sentencepiece threads (%(default)s)")
    add("--workers", type=cli_types.positive_int, default=2, help="fairseq-preprocess workers (%(default)s)")
    add("--max-train", type=cli_types.positive_int, default=None, help="keep only the first N training pairs")
    add_debug_flag(parser)


def add_cleaning_arguments(parser: argparse.ArgumentParser, max_len: int) -> None:
    """``--max-len`` and ``--ratio``: the training-pair filter of :func:`.corpus.clean_pairs`."""
    parser.add_argument("--max-len", type=cli_types.positive_int, default=max_len,
                        help="most words a side in a training pair (%(default)s)")
    parser.add_argument("--ratio", type=float, default=1.5,
                        help="largest word-count ratio of a training pair (%(default)s)")


def subword_options(args: argparse.Namespace) -> dict:
    """The :class:`SubwordConfig` fields other than ``vocab_size`` from the flags of :func:`add_arguments`."""
    return dict(model_type=args.model_type, character_coverage=args.character_coverage,
                input_sentence_size=args.input_sentence_size, num_threads=args.threads)


def record_settings(out: Path, settings: Mapping[str, Any]) -> None:
    """Write ``out/settings.json``, or check that an existing one equals ``settings``.

    Raises:
        ValueError: when ``out`` was prepared with other settings (the message lists the differences).
    """
    path = Path(out) / "settings.json"
    settings = json.loads(json.dumps(dict(settings)))
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = {k: (old.get(k), settings.get(k)) for k in old.keys() | settings.keys()
                if old.get(k) != settings.get(k)}
        if diff:
            raise ValueError(f"{out} was prepared with other settings ({{name: (then, now)}}: {diff}): "
                             f"use another output directory or delete it")
        return
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def subword_settings(subword: SubwordConfig) -> dict:
    """The settings of ``subword`` that change the outputs (threads do not)."""
    return {k: v for k, v in dataclasses.asdict(subword).items() if k != "num_threads"}


def limit(pairs: Iterable[Pair], max_train: Optional[int]) -> Iterable[Pair]:
    """The first ``max_train`` pairs (all when None)."""
    if max_train is None:
        return pairs
    return islice(pairs, positive_int("max_train", max_train))


def write_raw(out: Path, langs: Tuple[str, str],
              make_splits: Callable[[], Mapping[str, Iterable[Pair]]]) -> Path:
    """Stream the pairs of every split into ``out/raw/{split}.{lang}``.

    ``make_splits`` is called only when ``raw/`` is missing (it may download), and returns an iterable of
    ``(src, tgt)`` pairs (single-line strings) for each of :data:`SPLITS`.

    Raises:
        ValueError: on a missing or empty split.
    """
    raw = Path(out) / "raw"
    with atomic_output(raw, is_dir=True) as tmp:
        if tmp is not None:
            splits = make_splits()
            missing = [s for s in SPLITS if s not in splits]
            if missing:
                raise ValueError(f"no pairs given for splits {missing} (need {SPLITS})")
            for split in SPLITS:
                n = 0
                with open(tmp / f"{split}.{langs[0]}", "w", encoding="utf-8") as fs, \
                        open(tmp / f"{split}.{langs[1]}", "w", encoding="utf-8") as ft:
                    for src, tgt in progress(splits[split], desc=f"raw {split}", unit=" pairs"):
                        fs.write(src + "\n")
                        ft.write(tgt + "\n")
                        n += 1
                if n == 0:
                    raise ValueError(f"the {split} split is empty")
                logger.info("raw %s: %d pairs", split, n)
    return raw


def train_sentencepiece(raw: Path, out: Path, langs: Sequence[str], subword: SubwordConfig) -> Path:
    """Joint sentencepiece model over ``raw/train.{lang}`` of both languages; returns ``spm.model``."""
    import sentencepiece as spm

    spm_dir = Path(out) / "sentencepiece"
    with atomic_output(spm_dir, is_dir=True) as tmp:
        if tmp is not None:
            logger.info("training sentencepiece: %s", subword)
            spm.SentencePieceTrainer.train(
                input=",".join(str(raw / f"train.{lang}") for lang in langs),
                model_prefix=str(tmp / "spm"), vocab_size=subword.vocab_size,
                character_coverage=subword.character_coverage, model_type=subword.model_type,
                bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
                input_sentence_size=subword.input_sentence_size, shuffle_input_sentence=True,
                num_threads=subword.num_threads, minloglevel=2,
            )
    return spm_dir / "spm.model"


def _batches(lines: Iterable[str], size: int) -> Iterator[List[str]]:
    it = iter(lines)
    while batch := list(islice(it, size)):
        yield batch


def encode(raw: Path, out: Path, model: Path, langs: Sequence[str], num_threads: int = 2) -> Path:
    """Sentencepiece pieces (space-separated) of every split, ``out/spm-text/{split}.{lang}``."""
    import sentencepiece as spm

    pieces_dir = Path(out) / "spm-text"
    with atomic_output(pieces_dir, is_dir=True) as tmp:
        if tmp is not None:
            sp = spm.SentencePieceProcessor(model_file=str(model))
            for split in SPLITS:
                for lang in langs:
                    with open(raw / f"{split}.{lang}", encoding="utf-8") as fin, \
                            open(tmp / f"{split}.{lang}", "w", encoding="utf-8") as fout:
                        lines = (line.rstrip("\n") for line in fin)
                        for batch in progress(_batches(lines, _BATCH), desc=f"spm {split}.{lang}",
                                              unit=f" x{_BATCH}"):
                            pieces = sp.encode(batch, out_type=str, num_threads=num_threads)
                            fout.write("".join(" ".join(p) + "\n" for p in pieces))
    return pieces_dir


def binarize(pieces_dir: Path, out: Path, src: str, tgt: str, workers: int = 2) -> Path:
    """``fairseq-preprocess --joined-dictionary`` of the pieces into ``out/data-bin``."""
    data_bin = Path(out) / "data-bin"
    with atomic_output(data_bin, is_dir=True) as tmp:
        if tmp is not None:
            cmd = [
                sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", src, "--target-lang", tgt,
                "--trainpref", str(pieces_dir / "train"), "--validpref", str(pieces_dir / "valid"),
                "--testpref", str(pieces_dir / "test"), "--destdir", str(tmp),
                "--joined-dictionary", "--workers", str(workers),
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return data_bin


def build(raw: Path, out: Path, langs: Tuple[str, str], subword: SubwordConfig, workers: int = 2) -> Path:
    """Sentencepiece, encoding and binarisation of ``raw`` (each step skipped if finished); returns data-bin."""
    positive_int("workers", workers)
    model = train_sentencepiece(raw, out, langs, subword)
    pieces_dir = encode(raw, out, model, langs, subword.num_threads)
    return binarize(pieces_dir, out, langs[0], langs[1], workers)
