"""IWSLT14 De-En (TED talks) -> sentencepiece -> fairseq ``data-bin``, following fairseq's
``examples/translation/prepare-iwslt14.sh``.

Train: ``de-en/train.tags.de-en.{de,en}`` without metadata lines (``<url>``, ``<talkid>``, ``<keywords>``,
``<speaker>``, ...; the text of ``<title>`` and ``<description>`` lines is kept, as fairseq does), cleaned
(:func:`.corpus.clean_pairs`: 1 to 175 words a side, length ratio at most 1.5) and lowercased (``--keep-case``
turns that off). Valid: every 23rd cleaned pair (1-based line numbers divisible by 23), taken out of train.
Test: the ``<seg>`` texts of IWSLT14.TED.dev2010, TEDX.dev2012, TED.tst2010, TED.tst2011 and TED.tst2012,
concatenated in that order. Unlike fairseq there is no Moses tokenisation (sentencepiece works on raw text),
so word counts, and hence which pairs are cleaned away, differ slightly.

The archive is downloaded into ``--download-dir`` (default ``OUT/downloads``; place ``de-en.tgz`` there by
hand without internet access). Output layout: :mod:`.pipeline`.

Usage: ``fairseq-shiftadd-prepare-iwslt14 --out OUT [--vocab-size 10000]``
"""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..cli_errors import run_main
from ..ops.validate import int_in_range
from . import pipeline
from .corpus import Pair, aligned, clean_pairs, read_lines, read_segments
from .download import fetch_members

logger = logging.getLogger(__name__)

__all__ = ["URL", "ARCHIVE", "TEST_SETS", "VALID_EVERY", "read_tag_lines", "split_valid", "raw_splits",
           "prepare", "main"]

URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
ARCHIVE = "de-en.tgz"
SRC, TGT = "de", "en"
TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
VALID_EVERY = 23

_TEXT_TAGS = re.compile(r"</?(?:title|description)>")


def _train_member(lang: str) -> str:
    return f"de-en/train.tags.de-en.{lang}"


def _test_member(name: str, lang: str) -> str:
    return f"de-en/IWSLT14.{name}.de-en.{lang}.xml"


def read_tag_lines(path: Path) -> Iterator[str]:
    """Text lines of an IWSLT ``train.tags`` file: ``<title>``/``<description>`` lose their tags, other
    lines that start with a tag (talk metadata) are dropped."""
    for line in read_lines(path):
        if line.startswith(("<title>", "<description>")):
            yield " ".join(_TEXT_TAGS.sub("", line).split())
        elif not line.startswith("<"):
            yield line


def split_valid(pairs: Sequence[Pair], every: int = VALID_EVERY) -> Tuple[List[Pair], List[Pair]]:
    """``(train, valid)``: valid holds the pairs whose 1-based position is divisible by ``every``."""
    int_in_range("every", every, 2)
    train = [p for i, p in enumerate(pairs, 1) if i % every]
    valid = [p for i, p in enumerate(pairs, 1) if i % every == 0]
    return train, valid


def raw_splits(download_dir: Path, max_train: Optional[int] = None, lowercase: bool = True,
               max_len: int = 175, ratio: float = 1.5) -> Dict[str, Iterable[Pair]]:
    """Download and extract ``de-en.tgz`` if needed; return the De-En pairs of train, valid and test."""
    download_dir = Path(download_dir)
    members = [_train_member(SRC), _train_member(TGT),
               *(_test_member(name, lang) for name in TEST_SETS for lang in (SRC, TGT))]
    paths = fetch_members(URL, download_dir / ARCHIVE, members, download_dir / "extracted")

    def case(pairs: Iterable[Pair]) -> List[Pair]:
        return [(s.lower(), t.lower()) for s, t in pairs] if lowercase else list(pairs)

    tagged = aligned(read_tag_lines(paths[_train_member(SRC)]), read_tag_lines(paths[_train_member(TGT)]),
                     "IWSLT14 train.tags")
    train, valid = split_valid(case(clean_pairs(tagged, max_len=max_len, ratio=ratio)))
    test = case(pair for name in TEST_SETS for pair in aligned(
        read_segments(paths[_test_member(name, SRC)]), read_segments(paths[_test_member(name, TGT)]), name))
    return {"train": pipeline.limit(train, max_train), "valid": valid, "test": test}


def prepare(out: Path, *, download_dir: Optional[Path] = None, vocab_size: int = 10000,
            max_train: Optional[int] = None, workers: int = 2, lowercase: bool = True, max_len: int = 175,
            ratio: float = 1.5, **subword_options) -> Path:
    """Run every step (each skipped if finished) and return the ``data-bin`` directory.

    Args:
        out: output directory (layout: :mod:`.pipeline`).
        download_dir: archive and extracted members (default ``out/downloads``).
        vocab_size: sentencepiece pieces.
        max_train: keep only the first N training pairs (after the valid split).
        workers: fairseq-preprocess workers.
        lowercase: lowercase every split (fairseq's IWSLT14 protocol).
        max_len, ratio: cleaning limits (:func:`.corpus.clean_pairs`).
        **subword_options: other :class:`.pipeline.SubwordConfig` fields.
    """
    subword = pipeline.SubwordConfig(vocab_size=vocab_size, **subword_options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.record_settings(out, {"dataset": "iwslt14", "pair": f"{SRC}-{TGT}", "max_train": max_train,
                                   "lowercase": lowercase, "max_len": max_len, "ratio": ratio,
                                   **pipeline.subword_settings(subword)})
    raw = pipeline.write_raw(out, (SRC, TGT), lambda: raw_splits(
        download_dir or out / "downloads", max_train, lowercase, max_len, ratio))
    return pipeline.build(raw, out, (SRC, TGT), subword, workers)


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--download-dir", type=Path, default=None, help="de-en.tgz (default: OUT/downloads)")
    parser.add_argument("--keep-case", action="store_true", help="do not lowercase")
    pipeline.add_cleaning_arguments(parser, max_len=175)
    pipeline.add_arguments(parser, vocab_size=10000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    print(prepare(args.out, download_dir=args.download_dir, vocab_size=args.vocab_size,
                  max_train=args.max_train, workers=args.workers, lowercase=not args.keep_case,
                  max_len=args.max_len, ratio=args.ratio, **pipeline.subword_options(args)))


main = run_main(_main, "fairseq-shiftadd-prepare-iwslt14")

if __name__ == "__main__":
    main()
