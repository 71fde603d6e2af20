"""The shared pipeline: interrupted steps leave no finished-looking output, re-runs resume; settings guard;
Multi30k's download fallback."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from prep_fakes import Pair, gz, lines, parallel, read_raw

from fairseq_shiftadd.prep import multi30k, pipeline

LANGS = ("en", "de")


def splits(n: int = 60) -> dict:
    pairs = parallel(seed=0, n=n, langs=LANGS)
    return {"train": pairs, "valid": pairs[:5], "test": pairs[5:10]}


def leftovers(out: Path) -> list:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".partial"))


def test_interrupted_raw_leaves_nothing_and_rerun_completes(tmp_path: Path) -> None:
    def broken() -> Iterator[Pair]:
        yield from splits()["train"][:7]
        raise OSError("corpus file truncated")

    with pytest.raises(OSError, match="truncated"):
        pipeline.write_raw(tmp_path, LANGS, lambda: {**splits(), "train": broken()})
    assert not (tmp_path / "raw").exists() and leftovers(tmp_path) == []
    raw = pipeline.write_raw(tmp_path, LANGS, splits)
    assert read_raw(raw, "train", LANGS) == splits()["train"]
    with pytest.raises(ValueError, match="test"):
        pipeline.write_raw(tmp_path / "other", LANGS, lambda: {"train": [("a", "b")], "valid": [("a", "b")]})
    with pytest.raises(ValueError, match="valid split is empty"):
        pipeline.write_raw(tmp_path / "empty", LANGS, lambda: {**splits(), "valid": []})


def test_interrupted_encode_and_binarize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sentencepiece as spm

    raw = pipeline.write_raw(tmp_path, LANGS, splits)
    model = pipeline.train_sentencepiece(raw, tmp_path, LANGS, pipeline.SubwordConfig(100, num_threads=1))
    encode = spm.SentencePieceProcessor.encode
    calls = []

    def flaky_encode(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two files written, the third fails
            raise KeyboardInterrupt
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(spm.SentencePieceProcessor, "encode", flaky_encode)
    with pytest.raises(KeyboardInterrupt):
        pipeline.encode(raw, tmp_path, model, LANGS, num_threads=1)
    assert not (tmp_path / "spm-text").exists() and leftovers(tmp_path) == []
    monkeypatch.setattr(spm.SentencePieceProcessor, "encode", encode)
    pieces = pipeline.encode(raw, tmp_path, model, LANGS, num_threads=1)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    for split in pipeline.SPLITS:
        decoded = [sp.decode(line.split()) for line in (pieces / f"{split}.de").read_text().splitlines()]
        assert decoded == [t for _, t in splits()[split]]

    def killed_preprocess(cmd, **kwargs):
        destdir = Path(cmd[cmd.index("--destdir") + 1])
        (destdir / "dict.en.txt").write_text("a 1\n")
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(subprocess, "run", killed_preprocess)
    with pytest.raises(subprocess.CalledProcessError):
        pipeline.binarize(pieces, tmp_path, *LANGS, workers=1)
    assert not (tmp_path / "data-bin").exists() and leftovers(tmp_path) == []


def test_settings_guard(tmp_path: Path) -> None:
    pipeline.record_settings(tmp_path, {"dataset": "x", "vocab_size": 100})
    pipeline.record_settings(tmp_path, {"dataset": "x", "vocab_size": 100})  # same: accepted
    with pytest.raises(ValueError, match=r"'vocab_size': \(100, 200\)"):
        pipeline.record_settings(tmp_path, {"dataset": "x", "vocab_size": 200})


@pytest.mark.parametrize("kwargs, message", [
    (dict(vocab_size=50), "vocab_size must be an integer >= 100, got 50"),
    (dict(model_type="wordpiece"), "unigram"),
    (dict(character_coverage=0.0), r"\(0, 1\]"),
    (dict(num_threads=0), "num_threads must be a positive integer, got 0"),
])
def test_subword_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pipeline.SubwordConfig(**kwargs)


def test_multi30k_downloads_when_src_dir_lacks_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    texts = {}
    for name in multi30k.SPLITS.values():
        for lang in LANGS:
            texts[f"{name}.{lang}.gz"] = lines([f"{name} sentence {i} in {lang}" for i in range(3)])
            (remote / f"{name}.{lang}.gz").write_bytes(gz(texts[f"{name}.{lang}.gz"]))
    monkeypatch.setattr(multi30k, "URL", remote.as_uri() + "/{file}")

    assert multi30k.locate(remote, tmp_path / "unused", LANGS) == remote  # complete: used in place
    assert not (tmp_path / "unused").exists()
    got = multi30k.locate(tmp_path / "empty", tmp_path / "dl", LANGS)
    assert got == tmp_path / "dl"
    assert sorted(p.name for p in got.iterdir()) == sorted(texts)
    pairs = {k: list(v) for k, v in multi30k.raw_splits(None, tmp_path / "dl", "en-de", max_train=2).items()}
    assert pairs["valid"] == [(f"val sentence {i} in en", f"val sentence {i} in de") for i in range(3)]
    assert len(pairs["train"]) == 2 and len(pairs["test"]) == 3
