"""WMT14 preparation on tiny archives in the real formats; the download is bypassed by pre-placed archives."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import pytest
from prep_fakes import Pair, member_texts, parallel, read_raw, wmt_sgm, write_tar

from fairseq_shiftadd.prep import pipeline, wmt14

# The archives and members fairseq's prepare-wmt14en2{de,fr}.sh read ("{}" = language code).
TRAIN_MEMBERS = {
    "en-de": [("training-parallel-europarl-v7.tgz", "training/europarl-v7.de-en.{}"),
              ("training-parallel-commoncrawl.tgz", "commoncrawl.de-en.{}"),
              ("training-parallel-nc-v12.tgz", "training/news-commentary-v12.de-en.{}")],
    "en-fr": [("training-parallel-europarl-v7.tgz", "training/europarl-v7.fr-en.{}"),
              ("training-parallel-commoncrawl.tgz", "commoncrawl.fr-en.{}"),
              ("training-parallel-un.tgz", "un/undoc.2000.fr-en.{}"),
              ("training-parallel-nc-v9.tgz", "training/news-commentary-v9.fr-en.{}"),
              ("training-giga-fren.tar", "giga-fren.release2.fixed.{}.gz")],
}
TEST_CODE = {"en-de": "deen", "en-fr": "fren"}
W250, W251 = " ".join(["wort"] * 250), " ".join(["wort"] * 251)
# (as written in every training corpus, as kept by cleaning or None when dropped)
NOISE = [
    (("", "Ein Satz ohne Quelle."), None),
    (("   ", "Noch ein Satz."), None),
    (("one two", "eins zwei drei vier"), None),                       # ratio 2 > 1.5
    ((W251, W251), None),                                             # 251 words > 250
    (("one two", "eins zwei drei"), ("one two", "eins zwei drei")),   # ratio 1.5: kept (and repeated)
    ((W250, W250), (W250, W250)),                                     # 250 words: kept
    (("tab\there  and\x07bell", "Tab\u200bhier und\x1fGlocke"), ("tab here and bell", "Tab hier und Glocke")),
    (("carriage\rreturn", "Wagen\rRücklauf"), ("carriage return", "Wagen Rücklauf")),
]
# newstest2014 segments with XML entities, as "expected text" pairs
ENTITIES = [('Tom & "Jerry" <b>', "Tom & „Jerry“ <b>"), ("It's 5 > 3", "Es ist 5 > 3")]


def make_wmt14(download_dir: Path, pair: str, n: int = 120) -> Dict[str, List[Pair]]:
    """Write the archives of ``pair`` into ``download_dir``; return the expected raw splits."""
    langs = tuple(pair.split("-"))
    archives: Dict[str, Dict[str, object]] = defaultdict(dict)
    train: List[Pair] = []
    for k, (archive, pattern) in enumerate(TRAIN_MEMBERS[pair]):
        good = parallel(seed=k, n=n, langs=langs)
        written = good[: n // 2] + [w for w, _ in NOISE] + good[n // 2:]
        train += good[: n // 2] + [kept for _, kept in NOISE if kept is not None] + good[n // 2:]
        archives[archive].update(member_texts(written, {lang: pattern.format(lang) for lang in langs}, langs,
                                              compress=pattern.endswith(".gz")))
    valid = parallel(seed=100, n=30, langs=langs)
    archives["dev.tgz"].update(member_texts(valid, {lang: f"dev/newstest2013.{lang}" for lang in langs}, langs))
    archives["dev.tgz"]["dev/newstest2013.cs"] = "Nepoužitý soubor.\n"
    test = ENTITIES + parallel(seed=200, n=20, langs=langs)
    code = TEST_CODE[pair]
    docs = [test[:7], test[7:]]  # two documents; segment ids restart in each
    archives["test-full.tgz"] = {
        f"test-full/newstest2014-{code}-{kind}.{lang}.sgm": wmt_sgm(kind, lang, [[p[side] for p in d] for d in docs])
        for side, (kind, lang) in enumerate((("src", langs[0]), ("ref", langs[1])))
    }
    for name, members in archives.items():
        write_tar(download_dir / name, members, mode="w" if name.endswith(".tar") else "w:gz")
    return {"train": train, "valid": valid, "test": test}


@pytest.fixture(scope="module")
def en_de(tmp_path_factory: pytest.TempPathFactory):
    """WMT14 En-De fakes prepared to data-bin with a 150-piece vocabulary."""
    root = tmp_path_factory.mktemp("wmt14")
    expected = make_wmt14(root / "downloads", "en-de")
    out = root / "out"
    data_bin = wmt14.prepare(out, "en-de", download_dir=root / "downloads", vocab_size=150, workers=1,
                             num_threads=1)
    return out, data_bin, expected


def test_raw_splits_en_de(en_de) -> None:
    out, _, expected = en_de
    for split in pipeline.SPLITS:
        assert read_raw(out / "raw", split, ("en", "de")) == expected[split], split
    assert ENTITIES[0] in read_raw(out / "raw", "test", ("en", "de"))  # entities unescaped


def test_raw_splits_en_fr_and_dedupe(tmp_path: Path) -> None:
    expected = make_wmt14(tmp_path, "en-fr", n=20)
    splits = {k: list(v) for k, v in wmt14.raw_splits("en-fr", tmp_path).items()}
    assert splits == expected
    deduped = list(wmt14.raw_splits("en-fr", tmp_path, dedupe=True, max_train=50)["train"])
    assert deduped == list(dict.fromkeys(expected["train"]))[:50]
    assert len(dict.fromkeys(expected["train"])) < len(expected["train"])  # the fakes do hold repeats


def test_data_bin_loads_in_fairseq(en_de) -> None:
    import sentencepiece as spm
    from fairseq.data import Dictionary, data_utils

    out, data_bin, expected = en_de
    assert (data_bin / "dict.en.txt").read_text() == (data_bin / "dict.de.txt").read_text()  # joined
    dictionary = Dictionary.load(str(data_bin / "dict.en.txt"))
    sp = spm.SentencePieceProcessor(model_file=str(out / "sentencepiece" / "spm.model"))
    assert sp.get_piece_size() == 150
    for split in pipeline.SPLITS:
        for lang in ("en", "de"):
            dataset = data_utils.load_indexed_dataset(str(data_bin / f"{split}.en-de.{lang}"), dictionary)
            assert len(dataset) == len(expected[split])
    train_de = data_utils.load_indexed_dataset(str(data_bin / "train.en-de.de"), dictionary)
    assert sp.decode(dictionary.string(train_de[0]).split()) == expected["train"][0][1]


def test_rerun_skips_finished_outputs_without_downloads(en_de, tmp_path: Path) -> None:
    out, data_bin, _ = en_de
    outputs = [out / name for name in ("settings.json", "raw", "sentencepiece", "spm-text", "data-bin")]
    stamps = [p.stat().st_mtime_ns for p in outputs]
    missing = tmp_path / "no-downloads"  # nothing there: a rerun must not need the archives
    assert wmt14.prepare(out, "en-de", download_dir=missing, vocab_size=150, workers=1, num_threads=1) == data_bin
    assert [p.stat().st_mtime_ns for p in outputs] == stamps
    assert not missing.exists()
    with pytest.raises(ValueError, match="vocab_size"):
        wmt14.prepare(out, "en-de", download_dir=missing, vocab_size=200)


def test_unknown_pair_and_missing_member(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="en-de"):
        wmt14.prepare(tmp_path, "de-fr")
    make_wmt14(tmp_path, "en-de", n=4)
    write_tar(tmp_path / "dev.tgz", {"dev/newstest2012.en": "x\n"})  # a dev.tgz without newstest2013
    with pytest.raises(FileNotFoundError, match="newstest2013"):
        wmt14.raw_splits("en-de", tmp_path)
