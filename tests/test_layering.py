#!/usr/bin/env python3
"""The package's layering holds: `lint-imports` checks setup.cfg's contracts (the core never
imports the kit, no layer imports a higher one, private modules stay in their package, no
import cycles)."""

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    beside_python = Path(sys.executable).with_name("lint-imports")
    found = beside_python if beside_python.is_file() else shutil.which("lint-imports")
    if found is None:
        pytest.skip("import-linter is part of the test extra")
    return str(found)


def test_the_contracts_cover_both_parts_and_every_core_layer() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    layers = config["importlinter:contract:core-layers"]["layers"].split()
    for part in ("kit", "attr", "calm", "visualization", "tuning", "metrics", "_utils"):
        assert part in layers, part
    types = {config[s]["type"] for s in config.sections() if s.startswith("importlinter:contract")}
    assert {"layers", "private_modules", "acyclic_siblings"} <= types


def test_lint_imports_keeps_every_contract() -> None:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
