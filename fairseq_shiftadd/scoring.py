"""BLEU of a translation system, the two ways the papers' numbers and the community's differ.

Both scores come from the same detokenized hypotheses and untouched references (``raw/test.<tgt>``):

* **sacreBLEU (detokenized)**: ``sacrebleu`` defaults (13a tokenisation, mixed case, exp smoothing);
  always reported with its signature, it is the comparable number.
* **tokenized BLEU**: the papers' protocol (tensor2tensor / fairseq ``get_ende_bleu.sh``): Moses
  ``tokenizer.perl -l <tgt>`` (sacremoses, HTML escaping on as in the Perl default) on hypothesis and
  reference, then for En-De compound splitting ``perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g'``,
  then ``multi-bleu.perl``: corpus BLEU on whitespace tokens, case-sensitive, no smoothing (a zero
  n-gram precision gives 0). It runs about 0.7-1 BLEU above sacreBLEU on newstest2014 En-De.

Corpus BLEU over n-gram orders 1..4, with clipped counts ``m_n`` (hypothesis n-grams found in the
reference, each at most as often as there), ``t_n`` hypothesis n-grams, hypothesis length ``c`` and
reference length ``r``::

    BLEU = 100 * BP * exp(mean_n log(m_n / t_n)),   BP = min(1, exp(1 - r / c))

Command line (WMT decoding: ``fairseq-generate ... --beam 4 --lenpen 0.6 --remove-bpe sentencepiece``)::

    fairseq-shiftadd-score --generate-output gen.txt --reference raw/test.de --target-lang de [--json]
    fairseq-shiftadd-score --hypotheses hyp.detok.txt --reference raw/test.fr --target-lang fr

Select checkpoints and subnets on ``--gen-subset valid`` against ``raw/valid.<tgt>``; score ``test`` once,
for the final report.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from sacrebleu.metrics import BLEU
from sacremoses import MosesTokenizer
from sacremoses.corpus import NonbreakingPrefixes

from .cli_errors import add_debug_flag, run_main

__all__ = [
    "ScoreReport",
    "main",
    "moses_tokenize",
    "read_generate_output",
    "read_lines",
    "read_reference",
    "sacrebleu_score",
    "score",
    "split_compounds",
    "tokenized_bleu",
]

COMPOUND_SPLIT_LANGS = frozenset({"de"})
MOSES_LANGS = tuple(sorted(set(NonbreakingPrefixes().available_langs.values())))
SENTENCEPIECE_MARK = "\u2581"
# fairseq-generate: "D-<id>\t<score>\t<detokenized text>" and "H-<id>\t<score>\t<text>"
_GENERATE_LINE = re.compile(r"([DH])-(\d+)\t([^\t]*)(?:\t(.*))?\Z", re.DOTALL)
# The Perl one-liner's (\S)-(\S): ASCII whitespace only, as Perl on bytes; non-overlapping, so
# "a-b-c" becomes "a ##AT##-##AT## b-c" exactly as the original script does.
_COMPOUND = re.compile(r"(\S)-(\S)", re.ASCII)


@dataclasses.dataclass(frozen=True)
class ScoreReport:
    """Both BLEU scores of one decode; ``lines()`` labels which is which."""

    sacrebleu: float
    sacrebleu_signature: str
    tokenized_bleu: float
    compound_split: bool
    target_lang: str
    sentences: int

    def lines(self) -> List[str]:
        split = "compound-split" if self.compound_split else "no compound split"
        return [
            f"sacreBLEU (detokenized) {self.sacrebleu:.2f}  {self.sacrebleu_signature}",
            f"tokenized BLEU (Moses -l {self.target_lang}, {split}, multi-bleu) {self.tokenized_bleu:.2f}",
        ]

    def to_json(self) -> Dict[str, object]:
        return dataclasses.asdict(self)


def read_lines(path: Union[str, Path]) -> List[str]:
    """The lines of a UTF-8 text file, split on ``\\n`` only (as fairseq and sacreBLEU read them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _check_no_pieces(texts: Sequence[str], where: object, what: str, hint: str) -> None:
    """Refuse text that is still sentencepiece-encoded: more than half of its lines hold a piece mark.

    Raises:
        ValueError: naming ``where``, the count and ``hint`` (what to pass instead).
    """
    pieces = sum(SENTENCEPIECE_MARK in text for text in texts)
    if pieces * 2 > len(texts):
        raise ValueError(
            f"{where}: {pieces} of {len(texts)} {what} hold sentencepiece pieces ('{SENTENCEPIECE_MARK}'): {hint}"
        )


def read_reference(path: Union[str, Path]) -> List[str]:
    """The reference sentences of ``path``, which must be plain text (e.g. ``PREPARED/raw/test.de``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty, or sentencepiece-encoded (the binarised data's text, not the reference).
    """
    references = read_lines(path)
    if not references:
        raise ValueError(f"{path}: the reference is empty")
    _check_no_pieces(references, path, "reference lines",
                     "pass the untouched reference (PREPARED/raw/<split>.<lang>), not the encoded text")
    return references


def _format_ids(ids: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def read_generate_output(source: Union[str, Path, Iterable[str]], expected: Optional[int] = None) -> List[str]:
    """Hypotheses of a ``fairseq-generate`` log, in the original sentence order.

    Takes the detokenized ``D-<id>`` lines, or the ``H-<id>`` lines when there are none; other lines
    (``S-``, ``T-``, ``P-``, logging) are ignored.

    Args:
        source: a path to the log, or its lines.
        expected: the number of references; every id in ``0..expected-1`` must appear exactly once.

    Raises:
        ValueError: no hypothesis lines; an id repeated (``--nbest`` > 1, or two logs concatenated), missing
            (generate skipped a sentence) or out of range; or the text still holds sentencepiece pieces.
    """
    lines = read_lines(source) if isinstance(source, (str, Path)) else [line.rstrip("\r\n") for line in source]
    where = source if isinstance(source, (str, Path)) else "the generate output"
    found: Dict[str, Dict[int, str]] = {"D": {}, "H": {}}
    repeated: Dict[str, List[int]] = {"D": [], "H": []}
    for line in lines:
        match = _GENERATE_LINE.match(line)
        if match is None:
            continue
        kind, index, text = match.group(1), int(match.group(2)), match.group(4) or ""
        if index in found[kind]:
            repeated[kind].append(index)
        found[kind][index] = text
    kind = "D" if found["D"] else "H"
    hypotheses = found[kind]
    if not hypotheses:
        raise ValueError(f"{where}: no 'D-<id>' or 'H-<id>' lines: is it fairseq-generate output?")
    if repeated[kind]:
        raise ValueError(
            f"{where}: {len(repeated[kind])} '{kind}-' ids appear more than once (ids {_format_ids(repeated[kind])}):"
            " generate with --nbest 1 and score one output at a time"
        )
    count = len(hypotheses) if expected is None else expected
    out_of_range = sorted(i for i in hypotheses if i >= count)
    if out_of_range:
        raise ValueError(
            f"{where}: '{kind}-' ids {_format_ids(out_of_range)} are beyond the {count} references: "
            "wrong reference file or wrong --gen-subset?"
        )
    missing = [i for i in range(count) if i not in hypotheses]
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} of {count} sentences have no '{kind}-' line (ids {_format_ids(missing)}): "
            "generate skipped them (--skip-invalid-size-inputs-valid-test, --max-len-*?) or the log is cut short"
        )
    ordered = [hypotheses[i] for i in range(count)]
    _check_no_pieces(ordered, where, "hypotheses", "generate with --remove-bpe sentencepiece")
    return ordered


def _check_pair(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must pair up")
    if not references:
        raise ValueError("no sentences to score")


def sacrebleu_score(hypotheses: Sequence[str], references: Sequence[str]) -> Tuple[float, str]:
    """Detokenized corpus BLEU with sacreBLEU's defaults, and its signature."""
    _check_pair(hypotheses, references)
    bleu = BLEU()
    result = bleu.corpus_score(list(hypotheses), [list(references)])
    return result.score, str(bleu.get_signature())


def split_compounds(text: str) -> str:
    """``Wein-Bar`` -> ``Wein ##AT##-##AT## Bar``: the Perl ``s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g``."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", text)


@lru_cache(maxsize=None)
def _moses(lang: str) -> MosesTokenizer:
    if lang not in MOSES_LANGS:
        raise ValueError(f"Moses tokenizer: unknown language {lang!r}; known: {', '.join(MOSES_LANGS)}")
    return MosesTokenizer(lang=lang)


def moses_tokenize(text: str, lang: str) -> str:
    """``tokenizer.perl -l lang`` (default options: HTML escaping on, no aggressive hyphen splitting)."""
    return _moses(lang).tokenize(text, return_str=True, escape=True)


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str], lang: str, compound_split: bool) -> float:
    """The papers' BLEU: Moses tokenisation, optional compound splitting, then multi-bleu.perl."""
    _check_pair(hypotheses, references)

    def prepare(text: str) -> str:
        tokens = moses_tokenize(text, lang)
        return split_compounds(tokens) if compound_split else tokens

    multi_bleu = BLEU(tokenize="none", smooth_method="none", force=True)
    return multi_bleu.corpus_score([prepare(h) for h in hypotheses], [[prepare(r) for r in references]]).score


def score(
    hypotheses: Sequence[str], references: Sequence[str], target_lang: str, compound_split: Optional[bool] = None
) -> ScoreReport:
    """Both scores; compound splitting defaults to on iff the target language is German."""
    split = target_lang in COMPOUND_SPLIT_LANGS if compound_split is None else compound_split
    detok, signature = sacrebleu_score(hypotheses, references)
    return ScoreReport(
        sacrebleu=detok,
        sacrebleu_signature=signature,
        tokenized_bleu=tokenized_bleu(hypotheses, references, target_lang, split),
        compound_split=split,
        target_lang=target_lang,
        sentences=len(references),
    )


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description="Detokenized sacreBLEU and the papers' tokenized (compound-split) BLEU of one decode.",
        epilog="WMT decoding: fairseq-generate DATA --path CKPT --gen-subset test --beam 4 --lenpen 0.6 "
        "--remove-bpe sentencepiece > gen.txt",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--generate-output", type=Path, help="fairseq-generate stdout (D-/H- lines)")
    source.add_argument("--hypotheses", type=Path, help="detokenized hypotheses, one per line, in test order")
    parser.add_argument("--reference", type=Path, required=True, help="untouched reference text, e.g. raw/test.de")
    parser.add_argument("--target-lang", required=True, help="target language code for the Moses tokenizer (de, fr)")
    parser.add_argument(
        "--compound-split", action=argparse.BooleanOptionalAction, default=None,
        help="split hyphenated compounds for tokenized BLEU (default: on iff --target-lang de)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of labelled lines")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    references = read_reference(args.reference)
    if args.generate_output is not None:
        hypotheses = read_generate_output(args.generate_output, expected=len(references))
    else:
        hypotheses = read_lines(args.hypotheses)
        _check_no_pieces(hypotheses, args.hypotheses, "hypotheses", "detokenize them (spm_decode) first")
    report = score(hypotheses, references, args.target_lang, args.compound_split)
    print(json.dumps(report.to_json()) if args.json else "\n".join(report.lines()))


main = run_main(_main, "fairseq-shiftadd-score")

if __name__ == "__main__":
    main()
