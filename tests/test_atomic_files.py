"""matgen._files: atomic writes of text, bytes, and files or folders written by other tools."""

from __future__ import annotations

import pytest

from matgen._files import atomic_path, atomic_write_bytes, atomic_write_text


def test_text_and_bytes_replace_the_file_and_leave_no_temporary(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert [f.name for f in p.parent.iterdir()] == ["a.txt"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    p = tmp_path / "a.zip"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["a.zip"]


def test_atomic_path_swaps_a_folder_and_honours_the_suffix(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "old.bin").write_text("x")
    with atomic_path(d) as tmp:
        tmp.mkdir()
        (tmp / "new.bin").write_text("y")
    assert [f.name for f in d.iterdir()] == ["new.bin"]
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt"]
    with atomic_path(tmp_path / "x.npy", suffix=".npy") as tmp:
        assert tmp.name.endswith(".npy") and tmp.name.startswith(".x.npy.")
        tmp.write_text("z")
    assert (tmp_path / "x.npy").read_text() == "z"
