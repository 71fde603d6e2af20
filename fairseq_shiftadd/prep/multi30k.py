"""Multi30k (Elliott et al. 2016) En-De / En-Fr: raw text -> sentencepiece -> fairseq ``data-bin``.

Input: a directory with ``train.{l}.gz``, ``val.{l}.gz`` and ``test_2016_flickr.{l}.gz``
(``../shared/data/multi30k`` in this repository's CI). Output (``--out``)::

    raw/{train,valid,test}.{src,tgt}     untouched text (references for sacreBLEU)
    sentencepiece/spm.{model,vocab}      joint sentencepiece model over both languages
    spm-text/{train,valid,test}.{src,tgt} sentencepiece pieces
    data-bin/                            fairseq binary data, joined dictionary

Every output is written atomically and skipped when present (:mod:`.steps`).

Usage: ``fairseq-shiftadd-prepare-multi30k --src-dir DIR --out OUT --pair en-de [--vocab-size 8000]``
"""
from __future__ import annotations

import argparse
import gzip
import logging
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence

from .steps import atomic_output

logger = logging.getLogger(__name__)

SPLITS: Dict[str, str] = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
PAIRS = ("en-de", "en-fr")


def _check_inputs(src_dir: Path, langs: Sequence[str]) -> None:
    missing = [
        str(src_dir / f"{name}.{lang}.gz") for name in SPLITS.values() for lang in langs
        if not (src_dir / f"{name}.{lang}.gz").is_file()
    ]
    if missing:
        raise FileNotFoundError("Multi30k files not found: " + ", ".join(missing))


def extract_raw(src_dir: Path, out: Path, langs: Sequence[str], max_train: int | None = None) -> Path:
    """Decompress the splits into ``out/raw/{split}.{lang}`` (optionally the first ``max_train`` train lines)."""
    _check_inputs(src_dir, langs)
    raw = out / "raw"
    with atomic_output(raw, is_dir=True) as tmp:
        if tmp is not None:
            for split, name in SPLITS.items():
                for lang in langs:
                    with gzip.open(src_dir / f"{name}.{lang}.gz", "rt", encoding="utf-8") as f:
                        lines = [line.strip() for line in f]
                    if split == "train" and max_train is not None:
                        lines = lines[:max_train]
                    (tmp / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return raw


def train_sentencepiece(raw: Path, out: Path, langs: Sequence[str], vocab_size: int) -> Path:
    """Joint unigram sentencepiece model over the training text of both languages."""
    import sentencepiece as spm

    spm_dir = out / "sentencepiece"
    with atomic_output(spm_dir, is_dir=True) as tmp:
        if tmp is not None:
            spm.SentencePieceTrainer.train(
                input=",".join(str(raw / f"train.{lang}") for lang in langs),
                model_prefix=str(tmp / "spm"), vocab_size=vocab_size, character_coverage=1.0,
                model_type="unigram", bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
                input_sentence_size=1_000_000, shuffle_input_sentence=True, num_threads=2,
                minloglevel=2,
            )
    model = spm_dir / "spm.model"
    return model


def encode(raw: Path, out: Path, model: Path, langs: Sequence[str]) -> Path:
    """Sentencepiece pieces for every split, ``out/spm-text/{split}.{lang}``."""
    import sentencepiece as spm

    pieces_dir = out / "spm-text"
    with atomic_output(pieces_dir, is_dir=True) as tmp:
        if tmp is not None:
            sp = spm.SentencePieceProcessor(model_file=str(model))
            for split in SPLITS:
                for lang in langs:
                    lines = (raw / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
                    pieces = sp.encode(lines, out_type=str)
                    (tmp / f"{split}.{lang}").write_text(
                        "".join(" ".join(p) + "\n" for p in pieces), encoding="utf-8"
                    )
    return pieces_dir


def binarize(pieces_dir: Path, out: Path, src: str, tgt: str, workers: int = 2) -> Path:
    """``fairseq-preprocess`` with a joined dictionary into ``out/data-bin``."""
    data_bin = out / "data-bin"
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


def prepare(src_dir: Path, out: Path, pair: str = "en-de", vocab_size: int = 8000,
            max_train: int | None = None) -> Path:
    """Run every step (each skipped if finished) and return the ``data-bin`` directory."""
    if pair not in PAIRS:
        raise ValueError(f"pair must be one of {PAIRS}, got {pair!r}")
    if vocab_size < 100:
        raise ValueError(f"vocab_size must be at least 100, got {vocab_size}")
    src, tgt = pair.split("-")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw = extract_raw(Path(src_dir), out, (src, tgt), max_train)
    model = train_sentencepiece(raw, out, (src, tgt), vocab_size)
    pieces_dir = encode(raw, out, model, (src, tgt))
    return binarize(pieces_dir, out, src, tgt)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src-dir", type=Path, default=Path("../shared/data/multi30k"),
                        help="directory with Multi30k *.gz files")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--pair", choices=PAIRS, default="en-de")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--max-train", type=int, default=None, help="use only the first N training pairs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    data_bin = prepare(args.src_dir, args.out, args.pair, args.vocab_size, args.max_train)
    print(data_bin)


if __name__ == "__main__":
    main()
