"""WMT14 En-De / En-Fr (statmt.org) -> sentencepiece -> fairseq ``data-bin``.

The training corpora are those of fairseq's ``examples/translation/prepare-wmt14en2de.sh`` (Europarl v7,
Common Crawl, News Commentary v12; about 4.5M pairs) and ``prepare-wmt14en2fr.sh`` (adds the UN corpus and
Giga-FrEn, News Commentary v9; about 40M pairs), cleaned like fairseq (:func:`.corpus.clean_pairs`: 1 to 250
words a side, length ratio at most 1.5) and optionally deduplicated. Valid: newstest2013 (plain text in
``dev.tgz``; fairseq's scripts instead hold out every 100th training pair). Test: the full newstest2014
(3003 sentences for En-De), parsed from the SGML files of ``test-full.tgz``.

Archives are downloaded into ``--download-dir`` (default ``OUT/downloads``; place them there by hand without
internet access) and the needed members extracted to ``DOWNLOAD_DIR/extracted``. Output layout:
:mod:`.pipeline`.

Usage: ``fairseq-shiftadd-prepare-wmt14 --pair en-de --out OUT [--vocab-size 32000] [--workers 8]``
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple

from ..cli_errors import run_main
from . import pipeline
from .corpus import Pair, aligned, clean_pairs, dedupe_pairs, read_parallel, read_segments
from .download import download_all, fetch_members

logger = logging.getLogger(__name__)

__all__ = ["PAIRS", "URLS", "Corpus", "TRAIN", "VALID", "TEST", "raw_splits", "prepare", "main"]

PAIRS = ("en-de", "en-fr")

URLS: Dict[str, str] = {
    "training-parallel-europarl-v7.tgz": "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz",
    "training-parallel-commoncrawl.tgz": "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz",
    "training-parallel-un.tgz": "http://statmt.org/wmt13/training-parallel-un.tgz",
    "training-parallel-nc-v9.tgz": "http://statmt.org/wmt14/training-parallel-nc-v9.tgz",
    "training-parallel-nc-v12.tgz":
        "http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
    "training-giga-fren.tar": "http://statmt.org/wmt10/training-giga-fren.tar",
    "dev.tgz": "http://data.statmt.org/wmt17/translation-task/dev.tgz",
    "test-full.tgz": "http://statmt.org/wmt14/test-full.tgz",
}


@dataclass(frozen=True)
class Corpus:
    """One text per language, ``<prefix><lang><suffix>``, inside the archive ``archive`` (a key of URLS)."""

    archive: str
    prefix: str
    suffix: str = ""

    def member(self, lang: str) -> str:
        return f"{self.prefix}{lang}{self.suffix}"


TRAIN: Dict[str, Tuple[Corpus, ...]] = {
    "en-de": (
        Corpus("training-parallel-europarl-v7.tgz", "training/europarl-v7.de-en."),
        Corpus("training-parallel-commoncrawl.tgz", "commoncrawl.de-en."),
        Corpus("training-parallel-nc-v12.tgz", "training/news-commentary-v12.de-en."),
    ),
    "en-fr": (
        Corpus("training-parallel-europarl-v7.tgz", "training/europarl-v7.fr-en."),
        Corpus("training-parallel-commoncrawl.tgz", "commoncrawl.fr-en."),
        Corpus("training-parallel-un.tgz", "un/undoc.2000.fr-en."),
        Corpus("training-parallel-nc-v9.tgz", "training/news-commentary-v9.fr-en."),
        Corpus("training-giga-fren.tar", "giga-fren.release2.fixed.", ".gz"),
    ),
}
VALID = Corpus("dev.tgz", "dev/newstest2013.")  # plain text, one sentence a line
# newstest2014 SGML: the source side is "-src.<src>.sgm", the reference "-ref.<tgt>.sgm".
TEST: Dict[str, Tuple[Corpus, Corpus]] = {
    pair: (Corpus("test-full.tgz", f"test-full/newstest2014-{code}-src.", ".sgm"),
           Corpus("test-full.tgz", f"test-full/newstest2014-{code}-ref.", ".sgm"))
    for pair, code in (("en-de", "deen"), ("en-fr", "fren"))
}


def _fetch(src: Corpus, tgt: Corpus, langs: Tuple[str, str], download_dir: Path) -> Tuple[Path, Path]:
    """The source text of ``src`` and the target text of ``tgt`` (one archive), fetched if needed."""
    members = (src.member(langs[0]), tgt.member(langs[1]))
    paths = fetch_members(URLS[src.archive], download_dir / src.archive, members, download_dir / "extracted")
    return paths[members[0]], paths[members[1]]


def raw_splits(pair: str, download_dir: Path, max_train: Optional[int] = None, dedupe: bool = False,
               max_len: int = 250, ratio: float = 1.5) -> Dict[str, Iterable[Pair]]:
    """Download and extract what ``pair`` needs; return the (lazy) pairs of train, valid and test."""
    langs = tuple(pair.split("-"))
    download_dir = Path(download_dir)
    corpora = [*((c, c) for c in TRAIN[pair]), (VALID, VALID), TEST[pair]]
    download_all([  # every missing archive is tried (and named) before any is extracted
        (URLS[src.archive], download_dir / src.archive) for src, tgt in corpora
        if not all((download_dir / "extracted" / m).exists() for m in (src.member(langs[0]), tgt.member(langs[1])))
    ])
    *train_files, valid_files, test_files = [_fetch(src, tgt, langs, download_dir) for src, tgt in corpora]

    train: Iterator[Pair] = clean_pairs(chain.from_iterable(read_parallel(s, t) for s, t in train_files),
                                        max_len=max_len, ratio=ratio)
    if dedupe:
        train = dedupe_pairs(train)
    test = aligned(read_segments(test_files[0]), read_segments(test_files[1]), f"newstest2014 {pair}")
    return {"train": pipeline.limit(train, max_train), "valid": read_parallel(*valid_files), "test": test}


def prepare(out: Path, pair: str = "en-de", *, download_dir: Optional[Path] = None, vocab_size: int = 32000,
            max_train: Optional[int] = None, workers: int = 2, dedupe: bool = False, max_len: int = 250,
            ratio: float = 1.5, **subword_options) -> Path:
    """Run every step (each skipped if finished) and return the ``data-bin`` directory.

    Args:
        out: output directory (layout: :mod:`.pipeline`).
        pair: one of :data:`PAIRS`.
        download_dir: archives and extracted members (default ``out/downloads``).
        vocab_size: sentencepiece pieces.
        max_train: keep only the first N cleaned training pairs.
        workers: fairseq-preprocess workers.
        dedupe: drop repeated training pairs.
        max_len, ratio: cleaning limits (:func:`.corpus.clean_pairs`).
        **subword_options: other :class:`.pipeline.SubwordConfig` fields.
    """
    if pair not in PAIRS:
        raise ValueError(f"pair must be one of {PAIRS}, got {pair!r}")
    subword = pipeline.SubwordConfig(vocab_size=vocab_size, **subword_options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.record_settings(out, {"dataset": "wmt14", "pair": pair, "max_train": max_train, "dedupe": dedupe,
                                   "max_len": max_len, "ratio": ratio, **pipeline.subword_settings(subword)})
    langs = tuple(pair.split("-"))
    raw = pipeline.write_raw(out, langs, lambda: raw_splits(
        pair, download_dir or out / "downloads", max_train, dedupe, max_len, ratio))
    return pipeline.build(raw, out, langs, subword, workers)


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", choices=PAIRS, default="en-de")
    parser.add_argument("--download-dir", type=Path, default=None, help="archives (default: OUT/downloads)")
    parser.add_argument("--dedupe", action="store_true", help="drop repeated training pairs")
    pipeline.add_cleaning_arguments(parser, max_len=250)
    pipeline.add_arguments(parser, vocab_size=32000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    print(prepare(args.out, args.pair, download_dir=args.download_dir, vocab_size=args.vocab_size,
                  max_train=args.max_train, workers=args.workers, dedupe=args.dedupe, max_len=args.max_len,
                  ratio=args.ratio, **pipeline.subword_options(args)))


main = run_main(_main, "fairseq-shiftadd-prepare-wmt14")

if __name__ == "__main__":
    main()
