#!/usr/bin/env python3
"""Atomic writes: the destination changes only when the whole write succeeded."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from captum_cams._utils.files import _host_tag, atomic_path, remove_stale_temporaries


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


@pytest.mark.parametrize("depth", [1, 3])
def test_missing_folder_is_refused_without_make_parents(tmp_path: Path, depth: int) -> None:
    target = tmp_path.joinpath(*["absent"] * depth) / "x.pt"
    with pytest.raises(FileNotFoundError, match="cannot write .*x.pt.*does not exist"):
        with atomic_path(target, make_parents=False):
            raise AssertionError("the block must not run")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make_parents", [True, False])
@pytest.mark.parametrize("below", [(), ("sub",), ("sub", "deeper")])
def test_a_file_in_place_of_a_folder_is_named(
    tmp_path: Path, make_parents: bool, below: tuple
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("keep")
    target = blocker.joinpath(*below) / "out.json"
    with pytest.raises(NotADirectoryError, match="blocker is a file, not a folder"):
        with atomic_path(target, make_parents=make_parents):
            raise AssertionError("the block must not run")
    assert blocker.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_a_folder_as_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match="out: it is a folder"):
        with atomic_path(tmp_path / "out"):
            raise AssertionError("the block must not run")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temporary_name(name: str, host: str, pid: int) -> str:
    return f".tmp-{name}.{host}.{pid}.abc_12x.tmp"


def test_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    host = _host_tag()
    dead = _dead_pid()
    stale = [
        tmp_path / _temporary_name("result.txt", host, dead),  # same destination
        tmp_path / _temporary_name("other.pt", host, dead),  # another file of the folder
    ]
    alive = [
        tmp_path / _temporary_name("result.txt", host, os.getpid()),  # a live writer
        tmp_path / _temporary_name("result.txt", "elsewhere", dead),  # another machine
        tmp_path / "notes.tmp",  # not a temporary of atomic_path
    ]
    for leftover in stale + alive:
        leftover.write_text("half")
    with atomic_path(tmp_path / "result.txt") as temporary:
        temporary.write_text("new")
    assert (tmp_path / "result.txt").read_text() == "new"
    assert all(not p.exists() for p in stale)
    assert all(p.read_text() == "half" for p in alive)


def test_remove_stale_temporaries_reports_what_it_removed(tmp_path: Path) -> None:
    leftover = tmp_path / _temporary_name("a.pt", _host_tag(), _dead_pid())
    leftover.write_text("half")
    assert remove_stale_temporaries(tmp_path) == [leftover]
    assert remove_stale_temporaries(tmp_path) == []
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_an_interrupted_writer_leaves_a_temporary_the_next_run_removes(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from captum_cams._utils.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as t:\n"
        "    t.write_text('half')\n"
        "    os._exit(9)\n"  # killed mid-write: no cleanup runs
    )
    target = tmp_path / "model.pt"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-c", code, str(target)], env=env)
    assert done.returncode == 9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".tmp-model.pt.") and not target.exists()
    with atomic_path(target) as temporary:
        temporary.write_text("whole")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert target.read_text() == "whole"
