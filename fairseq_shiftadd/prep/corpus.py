"""Reading and cleaning parallel text: plain/gzip line files, SGML/XML ``<seg>`` files, corpus filters.

Cleaning follows Moses' ``remove-non-printing-char.perl`` (every Unicode "Other" character becomes a space)
and ``clean-corpus-n.perl`` (drop a pair when either side has fewer than ``min_len`` or more than ``max_len``
words, or when the word-count ratio exceeds ``ratio`` either way), as fairseq's ``prepare-*.sh`` scripts do.
Word counts are whitespace splits of untokenised text (fairseq counts after Moses tokenisation, which splits
punctuation, so the same limits keep slightly more pairs here).
"""
from __future__ import annotations

import gzip
import html
import re
import unicodedata
from pathlib import Path
from typing import IO, Iterable, Iterator, List, Tuple

__all__ = ["Pair", "normalize", "open_text", "read_lines", "read_parallel", "read_segments",
           "aligned", "clean_pairs", "dedupe_pairs"]

Pair = Tuple[str, str]

_SEG = re.compile(r"<seg\b[^>]*>(.*?)</seg\s*>", re.DOTALL | re.IGNORECASE)


def normalize(line: str) -> str:
    """Unicode "Other" characters (controls, format, private use) -> space; whitespace collapsed, stripped."""
    line = " ".join(line.split())
    if not line.isprintable():
        line = " ".join("".join(" " if unicodedata.category(c)[0] == "C" else c for c in line).split())
    return line


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file for reading (bad bytes become U+FFFD), gunzipping ``*.gz`` transparently.

    Lines end at ``\\n`` only (as for Moses' Perl scripts): a stray ``\\r`` inside a line of one side must
    not split it and misalign the corpus.
    """
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="\n")
    return open(path, encoding="utf-8", errors="replace", newline="\n")


def read_lines(path: Path) -> Iterator[str]:
    """Normalised lines of a plain or gzipped text file."""
    with open_text(path) as f:
        for line in f:
            yield normalize(line)


def aligned(src: Iterable[str], tgt: Iterable[str], what: str) -> Iterator[Pair]:
    """Zip two sides of a parallel text, failing when one side is longer than the other."""
    src_it, tgt_it = iter(src), iter(tgt)
    n = 0
    for s in src_it:
        t = next(tgt_it, None)
        if t is None:
            raise ValueError(f"{what}: the source side has more lines than the target side ({n})")
        yield s, t
        n += 1
    if next(tgt_it, None) is not None:
        raise ValueError(f"{what}: the target side has more lines than the source side ({n})")


def read_parallel(src_path: Path, tgt_path: Path) -> Iterator[Pair]:
    """Normalised line pairs of two line-aligned files (plain or gzipped)."""
    return aligned(read_lines(src_path), read_lines(tgt_path), f"{src_path} / {tgt_path}")


def read_segments(path: Path) -> List[str]:
    """Texts of the ``<seg id="..">text</seg>`` elements of a WMT SGML or IWSLT XML file, in file order.

    XML entities (``&amp;``, ``&quot;``, ``&#39;``, ...) are unescaped and the text normalised.

    Raises:
        ValueError: when the file holds no ``<seg>`` element.
    """
    with open_text(path) as f:
        text = f.read()
    segments = [normalize(html.unescape(m.group(1))) for m in _SEG.finditer(text)]
    if not segments:
        raise ValueError(f"{path} holds no <seg> elements: not a WMT SGML / IWSLT XML file")
    return segments


def clean_pairs(pairs: Iterable[Pair], max_len: int, ratio: float, min_len: int = 1) -> Iterator[Pair]:
    """Keep pairs with ``min_len <= words <= max_len`` on both sides and a word-count ratio ``<= ratio``."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    for src, tgt in pairs:
        n_src, n_tgt = len(src.split()), len(tgt.split())
        if not (min_len <= n_src <= max_len and min_len <= n_tgt <= max_len):
            continue
        if n_src > ratio * n_tgt or n_tgt > ratio * n_src:
            continue
        yield src, tgt


def dedupe_pairs(pairs: Iterable[Pair]) -> Iterator[Pair]:
    """Drop repeated pairs, keeping the first (memory: one hash per distinct pair)."""
    seen = set()
    for pair in pairs:
        key = hash(pair)
        if key not in seen:
            seen.add(key)
            yield pair
