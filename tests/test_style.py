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


def test_test_file_names_are_unique() -> None:
    # tests/ has no __init__.py files, so pytest imports each test module by its base
    # name: two files called test_x.py in different folders break collection
    names = sorted(path.name for path in (REPO / "tests").rglob("test_*.py"))
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"test files share a base name: {duplicates}"
