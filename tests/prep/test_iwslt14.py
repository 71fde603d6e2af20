"""IWSLT14 De-En preparation on a tiny ``de-en.tgz`` in the real format (tag files and XML dev/test sets)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest
from prep_fakes import Pair, iwslt_tags, iwslt_xml, lines, parallel, read_raw, write_tar

from fairseq_shiftadd.prep import iwslt14, pipeline

TEST_SETS = ["TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012"]  # fairseq's order


def make_iwslt14(download_dir: Path, talks: int = 3, per_talk: int = 40) -> Dict[str, List[Pair]]:
    """Write ``download_dir/de-en.tgz``; return the cleaned training pairs (before the valid split, cased)
    and the test pairs."""
    members = {}
    de_talks, en_talks, kept = [], [], []
    for n in range(talks):
        title, description = parallel(seed=50 + n, n=2, langs=("de", "en"))
        text = parallel(seed=n, n=per_talk, langs=("de", "en"))
        text.insert(5, ("Ja.", "Yes, well, you know, sure."))  # ratio 5: dropped by cleaning
        de_talks.append((title[0], description[0], [s for s, _ in text]))
        en_talks.append((title[1], description[1], [t for _, t in text]))
        kept += [title, description] + text[:5] + text[6:]
    members["de-en/train.tags.de-en.de"] = iwslt_tags(de_talks)
    members["de-en/train.tags.de-en.en"] = iwslt_tags(en_talks)
    test: List[Pair] = []
    for k, name in enumerate(TEST_SETS):
        pairs = parallel(seed=100 + k, n=4 + k, langs=("de", "en"))
        test += pairs
        docs = [pairs[:2], pairs[2:]]
        for side, lang in enumerate(("de", "en")):
            members[f"de-en/IWSLT14.{name}.de-en.{lang}.xml"] = iwslt_xml(
                f"iwslt2014-{name}", lang, [[p[side] for p in d] for d in docs])
    members["de-en/README"] = lines(["IWSLT 2014 De-En"])
    write_tar(download_dir / "de-en.tgz", members)
    return {"cleaned": kept, "test": test}


def lower(pairs: List[Pair]) -> List[Pair]:
    return [(s.lower(), t.lower()) for s, t in pairs]


def test_raw_splits_follow_fairseq(tmp_path: Path) -> None:
    expected = make_iwslt14(tmp_path)
    splits = {k: list(v) for k, v in iwslt14.raw_splits(tmp_path).items()}
    cleaned = lower(expected["cleaned"])
    assert splits["valid"] == [p for i, p in enumerate(cleaned, 1) if i % 23 == 0]
    assert splits["train"] == [p for i, p in enumerate(cleaned, 1) if i % 23 != 0]
    assert len(splits["valid"]) == len(cleaned) // 23 > 1
    assert splits["test"] == lower(expected["test"])
    assert not any("<" in s or "talks, music" in s or "somebody" in s for pair in splits["train"] for s in pair)

    cased = iwslt14.raw_splits(tmp_path, lowercase=False, max_train=10)
    assert list(cased["train"]) == [p for i, p in enumerate(expected["cleaned"], 1) if i % 23][:10]


def test_split_valid_rule() -> None:
    pairs = [(str(i), str(i)) for i in range(1, 50)]
    train, valid = iwslt14.split_valid(pairs)
    assert valid == [("23", "23"), ("46", "46")]
    assert len(train) + len(valid) == len(pairs) and not set(train) & set(valid)
    with pytest.raises(ValueError, match=r"every must be an integer >= 2, got 1"):
        iwslt14.split_valid(pairs, every=1)


def test_cli_prepares_loadable_data_bin(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fairseq.data import Dictionary, data_utils

    make_iwslt14(tmp_path / "dl")
    out = tmp_path / "out"
    iwslt14.main(["--out", str(out), "--download-dir", str(tmp_path / "dl"), "--vocab-size", "120",
                  "--workers", "1", "--threads", "1", "--model-type", "bpe"])
    data_bin = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert data_bin == out / "data-bin"
    dictionary = Dictionary.load(str(data_bin / "dict.de.txt"))
    for split in pipeline.SPLITS:
        n = len(read_raw(out / "raw", split, ("de", "en")))
        for lang in ("de", "en"):
            assert len(data_utils.load_indexed_dataset(str(data_bin / f"{split}.de-en.{lang}"), dictionary)) == n
    assert '"model_type": "bpe"' in (out / "settings.json").read_text()
