#!/usr/bin/env python3
"""The code stays lint-clean and formatted (ruff, configured in ruff.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PATHS = ["captum_cams", "tests", "benchmarks", "tutorials"]  # the notebooks too


@pytest.mark.parametrize("arguments", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(arguments: list) -> None:
    pytest.importorskip("ruff", reason="ruff is part of the test extra")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *arguments, *PATHS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _imported_name(path: Path) -> str:
    # pytest imports a test module by its base name, prefixed by the folders above it
    # that hold an __init__.py (tests/calm has one: tests/attr/test_head.py and
    # tests/calm/test_head.py both mirror a head module; tests/attr cannot have one,
    # as a package called attr would shadow the attrs library's)
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def test_test_module_names_are_unique() -> None:
    # two test files pytest would import under one name break collection
    names = sorted(_imported_name(path) for path in (REPO / "tests").rglob("test_*.py"))
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"test files share an imported name: {duplicates}"
