"""Atomic writes (fairseq_shiftadd.atomic): the target changes only when the write succeeds, and no
temporary is left behind (but a resumable one)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fairseq_shiftadd.atomic import PARTIAL_SUFFIX, atomic_path, partial_path, remove, save_torch, write_text


class Interrupted(Exception):
    pass


def _names(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir())


def test_partial_name_rule() -> None:
    assert partial_path(Path("out/best.yaml")) == Path("out/best.yaml.partial")
    assert partial_path("front") == Path("front" + PARTIAL_SUFFIX)


def test_success_creates_parents_and_leaves_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.txt"
    with atomic_path(target) as temporary:
        assert temporary == partial_path(target)
        temporary.write_text("new")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "new"
    assert _names(target.parent) == ["out.txt"]


@pytest.mark.parametrize("existing", [None, "old"])
def test_exception_leaves_target_untouched_and_no_partial(tmp_path: Path, existing) -> None:
    target = tmp_path / "out.txt"
    if existing is not None:
        target.write_text(existing)
    with pytest.raises(Interrupted):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise Interrupted
    assert (target.read_text() if target.exists() else None) == existing
    assert _names(tmp_path) == ([] if existing is None else ["out.txt"])


def test_overwrites_a_file_and_removes_a_stale_partial(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    partial_path(target).write_text("a killed run's half file")
    with atomic_path(target) as temporary:
        assert not temporary.exists()  # fresh: the stale partial is not appended to
        temporary.write_text("new")
    assert target.read_text() == "new" and _names(tmp_path) == ["state.json"]


def test_directory_replaces_a_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "front"
    target.mkdir()
    (target / "00.yaml").write_text("old")
    (target / "01.yaml").write_text("old")
    with atomic_path(target, directory=True) as temporary:
        assert temporary.is_dir() and not any(temporary.iterdir())
        (temporary / "00.yaml").write_text("new")
    assert _names(target) == ["00.yaml"] and (target / "00.yaml").read_text() == "new"
    with pytest.raises(Interrupted):
        with atomic_path(target, directory=True) as temporary:
            (temporary / "00.yaml").write_text("half")
            raise Interrupted
    assert _names(tmp_path) == ["front"] and (target / "00.yaml").read_text() == "new"


def test_resume_keeps_the_partial_on_failure_and_appends_to_it(tmp_path: Path) -> None:
    target = tmp_path / "archive.tgz"
    with pytest.raises(Interrupted):
        with atomic_path(target, partial="resume") as temporary:
            temporary.write_bytes(b"first half ")
            raise Interrupted
    assert not target.exists() and partial_path(target).read_bytes() == b"first half "
    with atomic_path(target, partial="resume") as temporary:
        with open(temporary, "ab") as f:
            f.write(b"second half")
    assert target.read_bytes() == b"first half second half" and _names(tmp_path) == ["archive.tgz"]


def test_unique_temporaries_differ_and_follow_the_name_rule(tmp_path: Path) -> None:
    target = tmp_path / "kernel.so"
    with atomic_path(target, partial="unique") as first, atomic_path(target, partial="unique") as second:
        assert first != second and first.exists() and second.exists()
        assert first.name.startswith("kernel.so.") and first.name.endswith(PARTIAL_SUFFIX)
        first.write_bytes(b"one")
        second.write_bytes(b"two")
    assert target.read_bytes() == b"one"  # the last rename wins; both are whole
    assert _names(tmp_path) == ["kernel.so"]
    with pytest.raises(Interrupted):
        with atomic_path(target, partial="unique"):
            raise Interrupted
    assert _names(tmp_path) == ["kernel.so"]


def test_bad_mode_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"partial must be one of \('fresh', 'resume', 'unique'\), got 'keep'"):
        with atomic_path(tmp_path / "x", partial="keep"):
            pass


def test_write_text_and_save_torch(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    save_torch({"w": torch.ones(2)}, tmp_path / "deep" / "c.pt")
    assert torch.equal(torch.load(tmp_path / "deep" / "c.pt")["w"], torch.ones(2))
    assert _names(tmp_path / "deep") == ["c.pt"]


def test_remove_files_directories_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    (tmp_path / "f").write_text("f")
    for name in ("d", "f", "missing"):
        remove(tmp_path / name)
    assert _names(tmp_path) == []
