#!/usr/bin/env python3
"""The package type-checks: `mypy captum_cams` with setup.cfg's configuration finds no error
(unused `type: ignore` comments count as errors), and the return type of `attribute`
follows its flags (`return_weights`, `return_convergence_delta`, `return_details`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: assert_type fails mypy when the overloads give another type than the flag promises
FLAG_TYPES = """
from typing import Tuple, assert_type

from torch import Tensor

from captum_cams import (
    LayerGradCamPlusPlus, LayerIntegratedGradCam, LayerLibraCam, LayerLiftCam, LayerScoreCam,
    ThresholdFineTuned, TFTResult,
)
from captum_cams.attr import LibraCamDetails


def flags(x: Tensor, pp: LayerGradCamPlusPlus, score: LayerScoreCam, lift: LayerLiftCam,
          igc: LayerIntegratedGradCam, libra: LayerLibraCam, tft: ThresholdFineTuned) -> None:
    assert_type(pp.attribute(x), Tensor)
    assert_type(pp.attribute(x, return_weights=True), Tuple[Tensor, Tensor])
    assert_type(score.attribute(x, return_weights=False), Tensor)
    assert_type(lift.attribute(x, return_weights=True), Tuple[Tensor, Tensor])
    assert_type(lift.attribute(x, return_convergence_delta=True), Tuple[Tensor, Tensor])
    assert_type(
        lift.attribute(x, return_weights=True, return_convergence_delta=True),
        Tuple[Tensor, Tensor, Tensor],
    )
    assert_type(igc.attribute(x, return_convergence_delta=True), Tuple[Tensor, Tensor])
    assert_type(libra.attribute(x, return_details=True), Tuple[Tensor, LibraCamDetails])
    assert_type(tft.attribute(x, return_details=True), Tuple[Tensor, TFTResult])
    assert_type(tft.attribute(x), Tensor)
"""


def test_mypy_finds_no_error_and_types_follow_the_flags(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is part of the test extra")
    snippet = tmp_path / "flag_types.py"
    snippet.write_text(FLAG_TYPES)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "captum_cams",
         str(snippet)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout
