"""Text readers and cleaning rules shared by the datasets."""
from __future__ import annotations

from pathlib import Path

import pytest
from prep_fakes import gz, wmt_sgm

from fairseq_shiftadd.prep.corpus import aligned, clean_pairs, normalize, read_lines, read_parallel, read_segments


def test_normalize_replaces_other_characters() -> None:
    assert normalize("  a\tb\x07c\u200bd\u00a0e  \n") == "a b c d e"
    assert normalize("Grüße, ça va?") == "Grüße, ça va?"


def test_read_lines_splits_on_newline_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt.gz").write_bytes(gz("one\rtwo\r\nthree\x85four\n\xa0\n"))
    assert list(read_lines(tmp_path / "a.txt.gz")) == ["one two", "three four", ""]


def test_read_segments_unescapes_in_document_order(tmp_path: Path) -> None:
    docs = [["B & <C>", 'say "hi"'], ["It's", "z"]]
    path = tmp_path / "newstest2014-deen-src.en.sgm"
    path.write_text(wmt_sgm("src", "en", docs) + '<seg id="9">a &#39;b&#x27; &apos;c&apos;</seg>\n')
    assert read_segments(path) == ["B & <C>", 'say "hi"', "It's", "z", "a 'b' 'c'"]
    (tmp_path / "empty.sgm").write_text("<srcset>\n</srcset>\n")
    with pytest.raises(ValueError, match="no <seg>"):
        read_segments(tmp_path / "empty.sgm")


def test_parallel_sides_must_align(tmp_path: Path) -> None:
    (tmp_path / "a.en").write_text("x\ny\n")
    (tmp_path / "a.de").write_text("x\n")
    with pytest.raises(ValueError, match="source side has more lines"):
        list(read_parallel(tmp_path / "a.en", tmp_path / "a.de"))
    with pytest.raises(ValueError, match="target side has more lines"):
        list(aligned(["a"], ["a", "b"], "test"))


def test_clean_pairs_rules() -> None:
    pairs = [("a b", "a b c"), ("a b", "a b c d"), ("", "a"), ("a " * 5, "b " * 5), ("a " * 6, "b " * 6)]
    assert list(clean_pairs(pairs, max_len=5, ratio=1.5)) == [pairs[0], pairs[3]]
    with pytest.raises(ValueError, match="min_len"):
        list(clean_pairs(pairs, max_len=0, ratio=1.5))
    with pytest.raises(ValueError, match="ratio"):
        list(clean_pairs(pairs, max_len=5, ratio=0.5))
