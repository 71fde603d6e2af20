"""Multi30k (Elliott et al. 2016) En-De / En-Fr: raw text -> sentencepiece -> fairseq ``data-bin``.

Input: a directory with ``train.{l}.gz``, ``val.{l}.gz`` and ``test_2016_flickr.{l}.gz``
(``../shared/data/multi30k`` in this repository's CI); when it lacks them they are downloaded from the
multi30k GitHub repository into ``--download-dir`` (default ``OUT/downloads``). Splits: train (29k),
valid = val (1014), test = test_2016_flickr (1000). Output layout: :mod:`.pipeline`.

Usage: ``fairseq-shiftadd-prepare-multi30k --out OUT --pair en-de [--src-dir DIR] [--vocab-size 8000]``
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from ..cli_errors import run_main
from . import pipeline
from .corpus import Pair, read_parallel
from .download import download_all

logger = logging.getLogger(__name__)

__all__ = ["SPLITS", "PAIRS", "URL", "locate", "raw_splits", "prepare", "main"]

SPLITS: Dict[str, str] = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
PAIRS = ("en-de", "en-fr")
URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{file}"
DEFAULT_SRC_DIR = Path("../shared/data/multi30k")


def _files(langs: Sequence[str]) -> List[str]:
    return [f"{name}.{lang}.gz" for name in SPLITS.values() for lang in langs]


def locate(src_dir: Optional[Path], download_dir: Path, langs: Sequence[str]) -> Path:
    """``src_dir`` when it holds every needed file, else ``download_dir`` after downloading them there."""
    if src_dir is not None:
        missing = [f for f in _files(langs) if not (Path(src_dir) / f).is_file()]
        if not missing:
            return Path(src_dir)
        logger.warning("%s lacks %s: downloading Multi30k into %s", src_dir, missing, download_dir)
    download_all([(URL.format(file=file), Path(download_dir) / file) for file in _files(langs)])
    return Path(download_dir)


def raw_splits(src_dir: Optional[Path], download_dir: Path, pair: str = "en-de",
               max_train: Optional[int] = None) -> Dict[str, Iterable[Pair]]:
    """The (lazy) pairs of train, valid and test, from ``src_dir`` or downloaded (:func:`locate`)."""
    src, tgt = pair.split("-")
    root = locate(src_dir, download_dir, (src, tgt))
    pairs = {split: read_parallel(root / f"{name}.{src}.gz", root / f"{name}.{tgt}.gz")
             for split, name in SPLITS.items()}
    return {**pairs, "train": pipeline.limit(pairs["train"], max_train)}


def prepare(src_dir: Optional[Path], out: Path, pair: str = "en-de", vocab_size: int = 8000,
            max_train: Optional[int] = None, *, download_dir: Optional[Path] = None, workers: int = 2,
            **subword_options) -> Path:
    """Run every step (each skipped if finished) and return the ``data-bin`` directory.

    Args:
        src_dir: directory with the Multi30k ``*.gz`` files, or None to download them.
        out: output directory (layout: :mod:`.pipeline`).
        pair: one of :data:`PAIRS`.
        vocab_size: sentencepiece pieces.
        max_train: keep only the first N training pairs.
        download_dir: where missing files are downloaded (default ``out/downloads``).
        workers: fairseq-preprocess workers.
        **subword_options: other :class:`.pipeline.SubwordConfig` fields.
    """
    if pair not in PAIRS:
        raise ValueError(f"pair must be one of {PAIRS}, got {pair!r}")
    subword = pipeline.SubwordConfig(vocab_size=vocab_size, **subword_options)
    src, tgt = pair.split("-")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.record_settings(out, {"dataset": "multi30k", "pair": pair, "max_train": max_train,
                                   **pipeline.subword_settings(subword)})

    raw = pipeline.write_raw(out, (src, tgt), lambda: raw_splits(
        src_dir, download_dir or out / "downloads", pair, max_train))
    return pipeline.build(raw, out, (src, tgt), subword, workers)


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", choices=PAIRS, default="en-de")
    parser.add_argument("--src-dir", type=Path, default=DEFAULT_SRC_DIR,
                        help="directory with the Multi30k *.gz files (downloaded when it lacks them)")
    parser.add_argument("--download-dir", type=Path, default=None, help="default: OUT/downloads")
    pipeline.add_arguments(parser, vocab_size=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    print(prepare(args.src_dir, args.out, args.pair, args.vocab_size, args.max_train,
                  download_dir=args.download_dir, workers=args.workers, **pipeline.subword_options(args)))


main = run_main(_main, "fairseq-shiftadd-prepare-multi30k")

if __name__ == "__main__":
    main()
