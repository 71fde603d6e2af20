"""Tiny corpora in the formats of the real WMT14, IWSLT14 and Multi30k files, for offline tests.

Member paths are spelled out here (not read from the modules under test), so a wrong path in a module's
table fails the tests.
"""
from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple, Union

from xml.sax.saxutils import escape

Pair = Tuple[str, str]
QUOTE = {'"': "&quot;"}

LETTERS = {"en": "abcdefghijklmnoprstuwy", "de": "abcdefghiklmnorstuwzäöüß", "fr": "abcdeéèfgilmnoprstuàç"}


def vocabulary(rng: random.Random, lang: str, size: int = 120) -> List[str]:
    letters = LETTERS[lang]
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(size)]


def parallel(seed: int, n: int, langs: Tuple[str, str], lo: int = 3, hi: int = 12) -> List[Pair]:
    """``n`` pairs of random sentences whose word counts differ by at most one (never dropped by cleaning)."""
    rng = random.Random(seed)
    vocabs = [vocabulary(rng, lang) for lang in langs]
    pairs = []
    for _ in range(n):
        k = rng.randint(lo, hi)
        m = max(2, k + rng.choice((-1, 0, 1)))
        pairs.append((" ".join(rng.choices(vocabs[0], k=k)).capitalize() + ".",
                      " ".join(rng.choices(vocabs[1], k=m)).capitalize() + "."))
    return pairs


def lines(texts: Sequence[str]) -> str:
    return "".join(t + "\n" for t in texts)


def write_tar(path: Path, members: Mapping[str, Union[str, bytes]], mode: str = "w:gz") -> Path:
    """A tar archive (gzipped by default) holding ``members`` (text is UTF-8 encoded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            raw = data.encode("utf-8") if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def gz(text: str) -> bytes:
    return gzip.compress(text.encode("utf-8"))


def wmt_sgm(kind: str, lang: str, docs: Sequence[Sequence[str]]) -> str:
    """A WMT newstest SGML file: ``<srcset>`` or ``<refset>``, ``<doc>``s of ``<seg id>`` (ids restart per doc)."""
    root = "srcset" if kind == "src" else "refset"
    attrs = 'setid="newstest2014" srclang="any"' + ("" if kind == "src" else f' trglang="{lang}"')
    out = [f"<{root} {attrs}>"]
    for d, doc in enumerate(docs):
        out.append(f'<doc sysid="{kind}" docid="{d}-bbc" genre="news" origlang="en">')
        out.append("<p>")
        out += [f'<seg id="{i}">{escape(t, QUOTE)}</seg>' for i, t in enumerate(doc, 1)]
        out.append("</p>")
        out.append("</doc>")
    out.append(f"</{root}>")
    return lines(out)


def iwslt_xml(setid: str, lang: str, docs: Sequence[Sequence[str]]) -> str:
    """An IWSLT14 dev/test XML file: talk metadata lines, then one ``<seg id>`` a line (padded with spaces)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<mteval>", f'<srcset setid="{setid}" srclang="{lang}">']
    for d, doc in enumerate(docs):
        out += [f'<doc docid="{d}" genre="lectures">', f"<url>http://www.ted.com/talks/{d}.html</url>",
                "<keywords>talks, science</keywords>", f"<talkid>{d}</talkid>", "<title>A talk</title>"]
        out += [f'<seg id="{i}"> {escape(t)} </seg>' for i, t in enumerate(doc, 1)]
        out.append("</doc>")
    out += ["</srcset>", "</mteval>"]
    return lines(out)


def iwslt_tags(talks: Sequence[Tuple[str, str, Sequence[str]]]) -> str:
    """An IWSLT ``train.tags`` file: per talk metadata lines, title, description, then its text lines."""
    out = []
    for n, (title, description, text) in enumerate(talks):
        out += [f"<url>http://www.ted.com/talks/{n}.html</url>", "<keywords>talks, music</keywords>",
                "<speaker>Somebody</speaker>", f"<talkid>{n}</talkid>", f"<title>{title}</title>",
                f"<description>{description}</description>"]
        out += list(text)
    return lines(out)


def split_text(pairs: Sequence[Pair]) -> Tuple[List[str], List[str]]:
    return [s for s, _ in pairs], [t for _, t in pairs]


def read_raw(raw: Path, split: str, langs: Tuple[str, str]) -> List[Pair]:
    src = (raw / f"{split}.{langs[0]}").read_text(encoding="utf-8").splitlines()
    tgt = (raw / f"{split}.{langs[1]}").read_text(encoding="utf-8").splitlines()
    assert len(src) == len(tgt)
    return list(zip(src, tgt))


def member_texts(pairs: Sequence[Pair], path_of: Dict[str, str], langs: Tuple[str, str],
                 compress: bool = False) -> Dict[str, Union[str, bytes]]:
    """``{member path: text}`` of both sides; ``path_of[lang]`` is the member path of that side."""
    sides = dict(zip(langs, split_text(pairs)))
    return {path_of[lang]: gz(lines(sides[lang])) if compress else lines(sides[lang]) for lang in langs}
