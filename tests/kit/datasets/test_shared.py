#!/usr/bin/env python3
"""Finding a folder shared beside the project: an explicit root alone, else the
environment variable, then ``../shared/data/<name>`` from the working directory."""

from pathlib import Path

import pytest

from captum_cams.kit.datasets._shared import find_shared_folder

ENV = "CAPTUM_CAMS_TEST_SHARED_FOLDER"


def _folder(parent: Path, name: str, marker: str = "test") -> Path:
    folder = parent / name
    (folder / marker).mkdir(parents=True)
    return folder


def test_an_explicit_root_is_checked_alone(tmp_path: Path, monkeypatch) -> None:
    holds = _folder(tmp_path, "holds")
    lacks = tmp_path / "lacks"
    lacks.mkdir()
    monkeypatch.setenv(ENV, str(holds))
    assert find_shared_folder("nothing", ENV, "test", root=holds) == holds
    # the environment variable would find a folder, but an explicit root is alone
    assert find_shared_folder("nothing", ENV, "test", root=lacks) is None
    assert find_shared_folder("nothing", ENV, "test", root=str(holds)) == holds


def test_the_environment_variable_comes_before_the_working_directory(
    tmp_path: Path, monkeypatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    beside = _folder(tmp_path / "shared" / "data", "thing")
    named = _folder(tmp_path / "elsewhere", "thing")
    monkeypatch.chdir(project)
    monkeypatch.delenv(ENV, raising=False)
    assert find_shared_folder("thing", ENV, "test") == beside
    monkeypatch.setenv(ENV, str(named))
    assert find_shared_folder("thing", ENV, "test") == named
    # a variable naming a folder without the marker falls through to the next candidate
    monkeypatch.setenv(ENV, str(tmp_path / "project"))
    assert find_shared_folder("thing", ENV, "test") == beside


def test_the_marker_decides_and_nothing_found_is_none(tmp_path: Path, monkeypatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _folder(tmp_path / "shared" / "data", "thing", marker="other")
    monkeypatch.chdir(project)
    monkeypatch.delenv(ENV, raising=False)
    assert find_shared_folder("thing", ENV, "test") is None
    assert find_shared_folder("thing", ENV, "other") == tmp_path / "shared" / "data" / "thing"
    assert find_shared_folder("missing-name-for-this-test", ENV, "test") is None


@pytest.mark.parametrize("marker", ["test", "file.txt"])
def test_a_file_is_a_marker_too(tmp_path: Path, marker: str) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / marker).write_text("x")
    assert find_shared_folder("f", ENV, marker, root=folder) == folder
