"""BLEU scoring: both scorers against BLEU worked out by hand, compound splitting, generate-output parsing, CLI.

Hand computation: corpus BLEU = 100 * BP * (p1 p2 p3 p4)^(1/4) with p_n = matched / total n-grams summed
over sentences and BP = min(1, exp(1 - r/c)). The n-grams are listed in comments, one mark per n-gram:
+ found in the reference, - not found.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from fairseq_shiftadd.scoring import (
    main,
    moses_tokenize,
    read_generate_output,
    sacrebleu_score,
    score,
    split_compounds,
    tokenized_bleu,
)


def _bleu(matched: list[int], total: list[int], hyp_len: int, ref_len: int) -> float:
    brevity = min(1.0, math.exp(1 - ref_len / hyp_len))
    return 100 * brevity * math.exp(sum(math.log(m / t) for m, t in zip(matched, total)) / 4)


# Two German sentences; 13a and Moses tokenise them alike (final punctuation split off).
DE_HYPS = ["Ein Mann fährt mit dem Rad.", "Kinder spielen im Park!"]
DE_REFS = ["Ein Mann fährt mit dem Fahrrad.", "Zwei Kinder spielen im Park."]
# sentence 1, 7 tokens each: Ein Mann fährt mit dem Rad .
#   1-grams ++++++-  (Rad)                          6/7
#   2-grams ++++--   (dem Rad, Rad .)               4/6
#   3-grams +++--                                   3/5
#   4-grams ++--                                    2/4
# sentence 2, hyp 5 tokens (Kinder spielen im Park !), ref 6 tokens:
#   1-grams ++++-    (!)                            4/5
#   2-grams +++-                                    3/4
#   3-grams ++-                                     2/3
#   4-grams +-                                      1/2
DE_BLEU = _bleu([6 + 4, 4 + 3, 3 + 2, 2 + 1], [7 + 5, 6 + 4, 5 + 3, 4 + 2], hyp_len=7 + 5, ref_len=7 + 6)


def test_sacrebleu_matches_hand_computation() -> None:
    value, signature = sacrebleu_score(DE_HYPS, DE_REFS)
    assert value == pytest.approx(DE_BLEU, abs=1e-9)
    for part in ("nrefs:1", "case:mixed", "tok:13a", "smooth:exp", "version:2."):
        assert part in signature


def test_tokenized_bleu_matches_hand_computation() -> None:
    assert tokenized_bleu(DE_HYPS, DE_REFS, "de", compound_split=False) == pytest.approx(DE_BLEU, abs=1e-9)
    assert tokenized_bleu(DE_HYPS, DE_REFS, "de", compound_split=True) == pytest.approx(DE_BLEU, abs=1e-9)


def test_compound_splitting_changes_tokenized_bleu_as_computed_by_hand() -> None:
    hyps, refs = ["Wir gehen heute in die Wein-Bar."], ["Wir gehen heute in eine Wein-Bar."]
    # unsplit, 7 tokens each: Wir gehen heute in die Wein-Bar .
    #   1-grams ++++-++ 6/7; 2-grams +++--+ 4/6; 3-grams ++--- 2/5; 4-grams +--- 1/4
    unsplit = _bleu([6, 4, 2, 1], [7, 6, 5, 4], 7, 7)
    # split, 9 tokens each: Wir gehen heute in die Wein ##AT##-##AT## Bar .
    #   1-grams ++++-++++ 8/9; 2-grams +++--+++ 6/8; 3-grams ++---++ 4/7; 4-grams +----+ 2/6
    split = _bleu([8, 6, 4, 2], [9, 8, 7, 6], 9, 9)
    assert tokenized_bleu(hyps, refs, "de", compound_split=False) == pytest.approx(unsplit, abs=1e-9)
    assert tokenized_bleu(hyps, refs, "de", compound_split=True) == pytest.approx(split, abs=1e-9)
    assert split > unsplit  # the inflation the papers' numbers carry
    report = score(hyps, refs, "de")
    assert report.compound_split and report.tokenized_bleu == pytest.approx(split, abs=1e-9)
    assert not score(hyps, refs, "de", compound_split=False).compound_split


def test_moses_apostrophe_split_in_french_and_no_compound_split() -> None:
    hyps = ["L'homme regarde le chat noir dans un jardin."]
    refs = ["L'homme regarde le chat noir dans le jardin."]
    # 13a keeps "L'homme", 9 tokens: L'homme regarde le chat noir dans un jardin .
    #   1-grams ++++++-++ 8/9; 2-grams +++++--+ 6/8; 3-grams ++++--- 4/7; 4-grams +++--- 3/6
    detok = _bleu([8, 6, 4, 3], [9, 8, 7, 6], 9, 9)
    # Moses -l fr splits "L'" off (escaped "L&apos;"), 10 tokens:
    #   1-grams +++++++-++ 9/10; 2-grams ++++++--+ 7/9; 3-grams +++++--- 5/8; 4-grams ++++--- 4/7
    moses = _bleu([9, 7, 5, 4], [10, 9, 8, 7], 10, 10)
    report = score(hyps, refs, "fr")
    assert report.sacrebleu == pytest.approx(detok, abs=1e-9)
    assert report.tokenized_bleu == pytest.approx(moses, abs=1e-9)
    assert not report.compound_split
    hyphenated_hyps, hyphenated_refs = ["Est-ce que le chat dort ?"], ["Est-ce que le chien dort ?"]
    fr = score(hyphenated_hyps, hyphenated_refs, "fr")
    assert fr.tokenized_bleu == tokenized_bleu(hyphenated_hyps, hyphenated_refs, "fr", compound_split=False)
    assert fr.tokenized_bleu != tokenized_bleu(hyphenated_hyps, hyphenated_refs, "fr", compound_split=True)


def test_multi_bleu_has_no_smoothing_but_sacrebleu_does() -> None:
    hyps, refs = ["Der Hund bellt laut"], ["Der Hund bellt leise"]  # no 4-gram matches
    assert tokenized_bleu(hyps, refs, "de", compound_split=True) == 0.0
    assert sacrebleu_score(hyps, refs)[0] > 0.0


def test_moses_tokenisation() -> None:
    assert moses_tokenize("Hallo, Welt! Das kostet 3,50 Euro.", "de") == "Hallo , Welt ! Das kostet 3,50 Euro ."
    assert moses_tokenize('Er sagte "ja" & ging.', "de") == "Er sagte &quot; ja &quot; &amp; ging ."
    assert moses_tokenize("L'homme", "fr") == "L&apos; homme"
    assert moses_tokenize("Wein-Bar", "de") == "Wein-Bar"  # hyphens: the compound splitting's job
    with pytest.raises(ValueError, match="unknown language 'klingon'.*de"):
        moses_tokenize("x", "klingon")


COMPOUNDS = [
    ("Wein-Bar", "Wein ##AT##-##AT## Bar"),
    ("eine 5-Sterne-Bewertung", "eine 5 ##AT##-##AT## Sterne ##AT##-##AT## Bewertung"),
    ("a-b-c", "a ##AT##-##AT## b-c"),  # the Perl regex does not overlap: "b" was taken by the first match
    ("a - b", "a - b"),
    ("-x y-", "-x y-"),
    ("Nord-Süd-Gefälle, Ost-West", "Nord ##AT##-##AT## Süd ##AT##-##AT## Gefälle, Ost ##AT##-##AT## West"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), COMPOUNDS)
def test_split_compounds(text: str, expected: str) -> None:
    assert split_compounds(text) == expected


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl not installed")
def test_split_compounds_agrees_with_the_perl_one_liner() -> None:
    texts = [text for text, _ in COMPOUNDS] + ["Ein Mann -- mit Hut-Krempe --rennt", "x-\u00e9t\u00e9-y z"]
    result = subprocess.run(
        ["perl", "-ple", "s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g"], input="\n".join(texts) + "\n",
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.split("\n")[:-1] == [split_compounds(text) for text in texts]


def _generate_log(hyps: dict[int, str], kinds: str = "HD") -> list[str]:
    """fairseq-generate stdout as --remove-bpe sentencepiece writes it, in batch (not id) order."""
    lines = ["2024-01-01 00:00:00 | INFO | fairseq_cli.generate | loading model(s)"]
    for index, text in hyps.items():
        lines += [f"S-{index}\tsource {index}", f"T-{index}\treference {index}"]
        lines += [f"{kind}-{index}\t-0.{index + 1}\t{text}" for kind in kinds]
        lines.append(f"P-{index}\t-0.1 -0.2")
    lines.append("Generate test with beam=4: BLEU4 = 12.34, 40.0/20.0/10.0/5.0 (BP=1.000, ratio=1.0)")
    return lines


def test_read_generate_output_restores_sentence_order() -> None:
    lines = _generate_log({2: "c c", 0: "a a", 1: ""})
    assert read_generate_output(lines, expected=3) == ["a a", "", "c c"]
    assert read_generate_output(lines) == ["a a", "", "c c"]
    prefer_d = [line.replace("H-0\t-0.1\ta a", "H-0\t-0.1\ta ▁a") for line in lines]
    assert read_generate_output(prefer_d)[0] == "a a"
    assert read_generate_output(_generate_log({1: "b", 0: "a"}, kinds="H")) == ["a", "b"]


@pytest.mark.parametrize(
    ("hyps", "expected", "kinds", "message"),
    [
        ({0: "a", 2: "c", 4: "e"}, 5, "D", r"2 of 5 sentences have no 'D-' line \(ids 1, 3\)"),
        ({0: "a", 1: "b", 2: "c"}, 2, "D", r"'D-' ids 2 are beyond the 2 references"),
        ({}, 2, "D", "no 'D-<id>' or 'H-<id>' lines"),
        ({0: "▁a ▁b", 1: "▁c"}, 2, "D", "--remove-bpe sentencepiece"),
    ],
)
def test_read_generate_output_errors(hyps: dict, expected: int, kinds: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_generate_output(_generate_log(hyps, kinds), expected=expected)


def test_read_generate_output_rejects_repeated_ids() -> None:
    lines = _generate_log({0: "a", 1: "b"}) + _generate_log({1: "b", 0: "a"})
    with pytest.raises(ValueError, match=r"2 'D-' ids appear more than once \(ids 1, 0\).*--nbest 1"):
        read_generate_output(lines, expected=2)


def test_score_rejects_mismatched_counts() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        score(["a", "b"], ["a"], "de")


def _write_example(tmp_path: Path, hyps: dict[int, str]) -> tuple[Path, Path]:
    gen, ref = tmp_path / "gen.txt", tmp_path / "test.de"
    gen.write_text("\n".join(_generate_log(hyps)) + "\n", encoding="utf-8")
    ref.write_text("\n".join(DE_REFS) + "\n", encoding="utf-8")
    return gen, ref


def test_console_script_on_generate_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The installed ``fairseq-shiftadd-score`` entry point, called in this process as the shell would call it."""
    gen, ref = _write_example(tmp_path, {1: DE_HYPS[1], 0: DE_HYPS[0]})
    (entry,) = entry_points(group="console_scripts", name="fairseq-shiftadd-score")
    entry.load()(["--generate-output", str(gen), "--reference", str(ref), "--target-lang", "de"])
    detok, tokenized = capsys.readouterr().out.splitlines()
    assert detok.startswith(f"sacreBLEU (detokenized) {DE_BLEU:.2f}  nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|")
    assert tokenized == f"tokenized BLEU (Moses -l de, compound-split, multi-bleu) {DE_BLEU:.2f}"


def test_cli_json_and_plain_hypotheses(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, ref = _write_example(tmp_path, {})
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("\n".join(DE_HYPS) + "\n", encoding="utf-8")
    main(["--hypotheses", str(hyp), "--reference", str(ref), "--target-lang", "fr", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["compound_split"] is False and report["sentences"] == 2
    assert report["sacrebleu"] == pytest.approx(DE_BLEU, abs=1e-9)
    assert report["sacrebleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hyps": {0: DE_HYPS[0]}}, "1 of 2 sentences have no 'D-' line (ids 1)"),
        ({"gen": "nope.txt"}, "file not found"),
        ({"lang": "xx"}, "unknown language 'xx'"),
        ({"ref": ["▁Ein ▁Mann", "▁Zwei ▁Hunde"]}, "2 of 2 reference lines hold sentencepiece pieces"),
    ],
)
def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, message: str) -> None:
    gen, ref = _write_example(tmp_path, change.get("hyps", dict(enumerate(DE_HYPS))))
    gen = tmp_path / change.get("gen", gen.name)
    if "ref" in change:
        ref.write_text("\n".join(change["ref"]) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["--generate-output", str(gen), "--reference", str(ref), "--target-lang", change.get("lang", "de")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("fairseq-shiftadd-score: error: ") and err.count("\n") == 1
