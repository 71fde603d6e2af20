"""Resumable downloads and archive member extraction for the data preparation scripts.

A download streams into ``<file>.partial`` and is renamed to ``<file>`` once complete, so a present file is
always whole; an interrupted download resumes from the ``.partial`` file with an HTTP ``Range`` request (or
starts over where the server ignores ranges): :func:`~fairseq_shiftadd.atomic.atomic_path` with
``partial="resume"``. A file placed by hand at ``<file>`` is used as it is. Extracted members are written
atomically (:func:`.steps.atomic_output`).
"""
from __future__ import annotations

import http.client
import logging
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..atomic import PARTIAL_SUFFIX, atomic_path, partial_path
from ..progress import progress
from .steps import atomic_output

logger = logging.getLogger(__name__)

__all__ = ["DownloadError", "download", "download_all", "extract_members", "fetch_members"]

_CHUNK = 1 << 20


class DownloadError(OSError):
    """Files could not be downloaded; the message names every URL and where to place the files by hand."""


def _failure(url: str, dest: Path, reason: object) -> DownloadError:
    return DownloadError(
        f"could not download {url} ({reason}). Without internet access, download it elsewhere and place it "
        f"at {dest}; a partial download in {partial_path(dest)} resumes on the next run"
    )


def download(url: str, dest: Path, timeout_s: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` exists, resuming from ``dest.partial``.

    Raises:
        DownloadError: on a network or HTTP error, or a body shorter than its ``Content-Length``.
    """
    dest = Path(dest)
    if dest.exists():
        logger.info("%s exists: download skipped", dest)
        return dest
    with atomic_path(dest, partial="resume") as part:
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                if offset and getattr(response, "status", None) != 206:
                    logger.info("%s ignores byte ranges: restarting the download", url)
                    offset = 0
                length = response.headers.get("Content-Length")
                total = None if length is None else offset + int(length)
                with open(part, "ab" if offset else "wb") as f, progress(
                    total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name
                ) as bar:
                    while chunk := response.read(_CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # the range starts at the end: the partial file is complete
                return dest
            raise _failure(url, dest, e) from e
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as e:
            raise _failure(url, dest, e) from e
        size = part.stat().st_size
        if total is not None and size != total:
            raise _failure(url, dest, f"received {size} of {total} bytes")
    logger.info("downloaded %s -> %s (%d bytes)", url, dest, size)
    return dest


def download_all(items: Sequence[Tuple[str, Path]], timeout_s: float = 60.0) -> List[Path]:
    """:func:`download` every ``(url, dest)`` (duplicates once), trying all before failing.

    Raises:
        DownloadError: naming EVERY file that failed (not only the first), the first reason, and where to
            place the files by hand.
    """
    unique = list(dict.fromkeys((url, Path(dest)) for url, dest in items))
    failed: List[Tuple[str, Path, DownloadError]] = []
    for url, dest in unique:
        try:
            download(url, dest, timeout_s)
        except DownloadError as err:
            failed.append((url, dest, err))
    if failed:
        reason = failed[0][2].__cause__ or failed[0][2]
        listing = ", ".join(f"{url} -> {dest}" for url, dest, _ in failed)
        raise DownloadError(
            f"could not download {len(failed)} of {len(unique)} files ({reason}): {listing}. Without internet "
            f"access, download them elsewhere and place them at those paths; partial downloads ({PARTIAL_SUFFIX}) "
            "resume on the next run"
        )
    return [dest for _, dest in unique]


def _member_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def extract_members(archive: Path, members: Sequence[str], dest: Path) -> Dict[str, Path]:
    """Extract ``members`` (paths inside the tar ``archive``) to ``dest/<member>`` in one pass.

    Members already extracted are skipped. Returns ``{member: path}``.

    Raises:
        FileNotFoundError: when the archive lacks one of ``members`` (the message lists what it holds).
    """
    paths = {m: Path(dest) / m for m in members}
    todo = {m for m, p in paths.items() if not p.exists()}
    if not todo:
        return paths
    seen = []
    with tarfile.open(archive, "r|*") as tar:
        for info in tar:
            name = _member_name(info.name)
            seen.append(name)
            if name not in todo or not info.isfile():
                continue
            with atomic_output(paths[name]) as tmp, open(tmp, "wb") as f:
                shutil.copyfileobj(tar.extractfile(info), f, _CHUNK)
            todo.discard(name)
            logger.info("extracted %s from %s", name, archive)
            if not todo:
                break
    if todo:
        raise FileNotFoundError(
            f"{archive} lacks {sorted(todo)}; it holds {seen[:20]}{' ...' if len(seen) > 20 else ''}"
        )
    return paths


def fetch_members(url: str, archive: Path, members: Sequence[str], dest: Path) -> Dict[str, Path]:
    """Download ``url`` to ``archive`` (unless every member is already extracted) and extract ``members``."""
    paths = {m: Path(dest) / m for m in members}
    if all(p.exists() for p in paths.values()):
        return paths
    return extract_members(download(url, archive), members, dest)
