#!/usr/bin/env python3
"""The command line: the main job on the embedded default, and one-line errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_cams.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_main_job_writes_a_figure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["--methods", "gradcam,gradcam++", "--num-images", "2", "--out", str(tmp_path)])
    assert status == 0
    figure = tmp_path / "explain.png"
    assert figure.stat().st_size > 10_000
    with Image.open(figure) as image:
        assert image.size[0] > 300 and len(np.unique(np.asarray(image.convert("L")))) > 50
    printed = capsys.readouterr().out
    assert "gradcam++" in printed and "energy in box" in printed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert figure.stat().st_mode & 0o044  # readable by others, like any saved figure


def test_explain_an_image_file(tmp_path: Path) -> None:
    image = (torch.rand(40, 50, 3) * 255).to(torch.uint8).numpy()
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    assert main(["explain", str(path), "--methods", "layercam", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "explain.png").is_file()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--methods", "nosuchcam"], "unknown method(s) nosuchcam"),
        (["explain", "/no/such/file.png"], "image not found"),
        (["--num-images", "0"], "--num-images must be at least 1"),
    ],
)
def test_bad_arguments_give_one_line(
    arguments: list, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(arguments + ["--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "explain.png").exists()


def test_not_an_image_without_traceback(tmp_path: Path) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    result = subprocess.run(
        [sys.executable, "-m", "captum_cams", "explain", str(fake), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 2
    assert "not a readable image" in result.stderr
    assert "Traceback" not in result.stderr
