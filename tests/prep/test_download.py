"""Downloads resume from ``.partial`` files and fail with a message saying where to place the file by hand;
archive members are extracted atomically."""
from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Iterator, List

import pytest
from prep_fakes import write_tar

from fairseq_shiftadd.prep.download import DownloadError, download, download_all, extract_members, fetch_members

PAYLOAD = bytes(range(256)) * 1000


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /data.bin, honouring ``Range: bytes=N-``; records the Range headers it saw. With ``cut``
    the next response announces the whole body but drops the connection after half of it."""

    ranges: List[str] = []
    cut = False

    def do_GET(self) -> None:
        if self.path != "/data.bin":
            self.send_error(404)
            return
        start = 0
        if (header := self.headers.get("Range")) is not None:
            self.ranges.append(header)
            start = int(header.removeprefix("bytes=").rstrip("-"))
        body = PAYLOAD[start:]
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if RangeHandler.cut:
            RangeHandler.cut = False
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    RangeHandler.ranges = []
    RangeHandler.cut = False
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_resumes_from_partial_file(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    half = len(PAYLOAD) // 2
    (tmp_path / "data.bin.partial").write_bytes(PAYLOAD[:half])
    assert download(f"{server}/data.bin", dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert RangeHandler.ranges == [f"bytes={half}-"]
    assert not (tmp_path / "data.bin.partial").exists()
    dest.write_bytes(b"placed by hand")
    download(f"{server}/data.bin", dest)  # present: skipped
    assert dest.read_bytes() == b"placed by hand" and RangeHandler.ranges == [f"bytes={half}-"]


def test_an_interrupted_download_keeps_its_partial_file_and_resumes(server: str, tmp_path: Path) -> None:
    dest, half = tmp_path / "data.bin", len(PAYLOAD) // 2
    RangeHandler.cut = True
    with pytest.raises(DownloadError, match=f"received {half} of {len(PAYLOAD)} bytes"):
        download(f"{server}/data.bin", dest)
    assert not dest.exists() and (tmp_path / "data.bin.partial").read_bytes() == PAYLOAD[:half]
    assert download(f"{server}/data.bin", dest).read_bytes() == PAYLOAD
    assert RangeHandler.ranges == [f"bytes={half}-"] and not (tmp_path / "data.bin.partial").exists()


def test_restarts_where_ranges_are_ignored(tmp_path: Path) -> None:
    source = tmp_path / "remote.bin"
    source.write_bytes(PAYLOAD)
    (tmp_path / "local.bin.partial").write_bytes(b"stale bytes")  # file:// ignores Range: start over
    assert download(source.as_uri(), tmp_path / "local.bin").read_bytes() == PAYLOAD


@pytest.mark.parametrize("path", ["/missing.tgz", None])
def test_failure_names_url_and_manual_placement(server: str, tmp_path: Path, path) -> None:
    url = f"{server}{path}" if path else (tmp_path / "missing.tgz").as_uri()
    dest = tmp_path / "dl" / "archive.tgz"
    with pytest.raises(DownloadError) as info:
        download(url, dest)
    message = str(info.value)
    assert url in message and f"place it at {dest}" in message
    assert not dest.exists()


def test_extract_members(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "a.tgz", {"./training/x.en": "hello\n", "training/x.de": "hallo\n",
                                             "other.txt": "unused\n"})
    paths = extract_members(archive, ["training/x.en", "training/x.de"], tmp_path / "ex")
    assert paths["training/x.de"].read_text() == "hallo\n" and paths["training/x.en"].read_text() == "hello\n"
    assert not (tmp_path / "ex" / "other.txt").exists()
    with pytest.raises(FileNotFoundError, match=r"lacks \['training/y.en'\].*other.txt"):
        extract_members(archive, ["training/x.en", "training/y.en"], tmp_path / "ex")
    assert not list((tmp_path / "ex" / "training").glob("*.partial"))
    archive.unlink()  # everything extracted: no archive (and no download) needed
    assert fetch_members("http://127.0.0.1:9/a.tgz", archive, ["training/x.en"], tmp_path / "ex") == {
        "training/x.en": tmp_path / "ex" / "training" / "x.en"}


def test_download_all_names_every_missing_file(tmp_path: Path) -> None:
    """Every download is tried; the one-line error names all that failed, not only the first."""
    present = tmp_path / "remote" / "ok.gz"
    present.parent.mkdir()
    present.write_bytes(PAYLOAD)
    names = ["train.en.gz", "train.de.gz", "val.en.gz"]
    items = [(present.as_uri(), tmp_path / "dl" / "ok.gz")]
    items += [((tmp_path / "remote" / name).as_uri(), tmp_path / "dl" / name) for name in names]
    with pytest.raises(DownloadError) as info:
        download_all(items + items[:1])  # a duplicate is fetched once
    message = str(info.value)
    assert message.startswith("could not download 3 of 4 files") and "\n" not in message
    assert all(str(tmp_path / "dl" / name) in message for name in names)
    assert (tmp_path / "dl" / "ok.gz").read_bytes() == PAYLOAD  # what could be fetched was
    assert isinstance(info.value, OSError)  # console scripts print it as one line
