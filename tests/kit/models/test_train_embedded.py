#!/usr/bin/env python3
"""The training command of the embedded shapes model: a tiny run writes a checkpoint the
loader reads back, and bad arguments are refused."""

import os

import pytest

from captum_cams.kit.models import load_embedded_default, train_embedded


def test_training_command_writes_a_loadable_checkpoint(tmp_path, capsys) -> None:
    out = tmp_path / "tiny.pt"
    accuracy = train_embedded.main(
        [
            "--epochs",
            "1",
            "--train-samples",
            "32",
            "--test-samples",
            "16",
            "--batch-size",
            "16",
            "--out",
            str(out),
        ]
    )
    assert 0.0 <= accuracy <= 1.0
    assert "test accuracy" in capsys.readouterr().out
    loaded = load_embedded_default(out)
    assert loaded.meta["epochs"] == 1 and loaded.meta["train_samples"] == 32
    assert os.listdir(tmp_path) == ["tiny.pt"]


def test_training_command_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        train_embedded.main(["--epochs", "0"])
