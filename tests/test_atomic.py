"""Atomic writes: all-or-nothing replacement, and the file mode an ordinary write gives."""

from __future__ import annotations

import os
import stat

import pytest

from nnp_lab._atomic import _UMASK, atomic_path, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_umask_mode_not_tempfile_mode(tmp_path):
    """A new file is readable as an ``open``-written one would be (0o666 & ~umask);
    tempfile's 0o600 made shipped data files unreadable to other users."""
    out = atomic_write_text(tmp_path / "a.txt", "x")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _mode(out) == _mode(plain) == 0o666 & ~_UMASK


def test_replacement_keeps_the_old_mode_and_failure_leaves_file(tmp_path):
    path = tmp_path / "b.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o640
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]  # no temporary left behind
