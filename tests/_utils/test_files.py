#!/usr/bin/env python3
"""Atomic writes: the destination changes only when the whole write succeeded."""

import os
from pathlib import Path

import pytest

from captum_cams._utils.files import atomic_path


def test_success_replaces_the_file_with_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.txt"
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary != target
        temporary.write_text("new")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.txt"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]


def test_missing_folder_is_refused_without_make_parents(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "absent" / "x.pt", make_parents=False):
            pass
