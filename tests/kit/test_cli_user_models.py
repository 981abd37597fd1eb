#!/usr/bin/env python3
"""The command line on a practitioner's own network and photos: a model made by a function
in a file (the shared ImageNet MobileNetV1, every default method, real size), a saved
torchvision state dict, class names, Libra-CAM's library from the user's images or refused
in one line, and a warning for an untrained network."""

import json
import shutil
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from captum_cams.kit.benchmark import METHODS, FolderData, metrics_for, parse_names
from captum_cams.kit.cli import main
from captum_cams.kit.datasets import IMAGENET_MOBILENET_FILE, find_imagenet_root
from captum_cams.kit.inputs import Preprocess, list_images

IMAGENET = find_imagenet_root()
needs_imagenet = pytest.mark.skipif(
    IMAGENET is None,
    reason="shared ImageNet folder absent (../shared/data/imagenet; set CAPTUM_CAMS_IMAGENET)",
)

#: The user's file: a function that builds the network; the weights come from --weights.
FACTORY = """
from captum_cams.kit.models import mobilenet_v1_075_192


def build():
    return mobilenet_v1_075_192()
"""


def _photos(folder: Path, classes: List[int]) -> Path:
    assert IMAGENET is not None
    folder.mkdir()
    for index in classes:
        (source,) = (IMAGENET / "photos").glob(f"{index:03d}_*.jpg")
        shutil.copy(source, folder / source.name)
    return folder


def _png_is_a_picture(path: Path) -> None:
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert len(np.unique(np.asarray(image.convert("L")))) > 50


def _factory(folder: Path) -> str:
    path = folder / "my_network.py"
    path.write_text(FACTORY)
    return f"{path}:build"


@needs_imagenet
def test_explain_a_function_model_on_photos_with_every_default_method(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert IMAGENET is not None
    photos = _photos(tmp_path / "photos", [1, 600])  # goldfish, hook
    library = _photos(tmp_path / "library", [100, 200, 400, 500, 700, 800])
    out = tmp_path / "out"
    status = main(
        ["explain", str(photos), "--model", _factory(tmp_path), "--weights",
         str(IMAGENET / IMAGENET_MOBILENET_FILE), "--library-data", str(library), "--out",
         str(out), "--quiet"]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert printed.err == ""  # trained, preprocessing from the module: nothing to warn about
    # the module's own preprocessing (192 px, [-1, 1]) and class names
    assert "001_n01443537_goldfish.jpg: goldfish (" in printed.out
    assert "600_n03532672_hook.jpg: hook (" in printed.out
    for name in parse_names(None, METHODS, "--methods"):  # the default methods, Libra-CAM too
        assert f"\n{name} " in printed.out, name
    _png_is_a_picture(out / "explain.png")


@needs_imagenet
def test_benchmark_a_function_model_on_photos_with_every_default_method(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert IMAGENET is not None
    photos = _photos(tmp_path / "photos", [300, 900])  # tiger beetle, water tower
    # photos have no boxes: the default metrics are the confidence, curve and deletion /
    # insertion columns (two of them are run: insertion and deletion alone would be 82
    # forward passes per method and image, most of this test's time)
    no_boxes = FolderData(list_images(str(photos)), Preprocess(219, 192))
    assert metrics_for(no_boxes) == [
        "average_drop", "increase_in_confidence", "api", "drop_rate", "insertion_auc",
        "deletion_auc", "api_apd_auc", "tft_rpi",
    ]  # fmt: skip
    out = tmp_path / "out"
    status = main(
        ["benchmark", "--model", _factory(tmp_path), "--weights",
         str(IMAGENET / IMAGENET_MOBILENET_FILE), "--data", str(photos), "--out", str(out),
         "--metrics", "average_drop,api_apd_auc", "--quiet"]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert status == 0, printed.err
    results = json.loads((out / "results.json").read_text())
    defaults = parse_names(None, METHODS, "--methods")
    assert list(results["methods"]) == defaults  # Libra-CAM's library from --data
    assert list(results["metrics"]) == ["average_drop", "api_apd_auc"]
    rows = results["examples"]
    assert len(rows) == 2 * len(defaults)
    named = {(row["image"], row["target_name"]) for row in rows}
    assert named == {
        ("300_n02165105_tiger_beetle.jpg", "tiger beetle"),
        ("900_n04562935_water_tower.jpg", "water tower"),
    }
    assert all(row["average_drop"] is not None for row in rows)
    assert len((out / "scores.csv").read_text().splitlines()) == 1 + len(rows)
    for name in ("overlay_grid.png", "threshold_sweep.png"):
        _png_is_a_picture(out / name)


def _random_photo(folder: Path) -> Path:
    pixels = (torch.rand(80, 96, 3, generator=torch.Generator().manual_seed(0)) * 255).byte()
    path = folder / "photo.png"
    Image.fromarray(pixels.numpy()).save(path)
    return path


def _resnet18_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    path = folder / "r18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_explain_a_saved_torchvision_state_dict_with_the_default_methods(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photo, checkpoint = _random_photo(tmp_path), _resnet18_checkpoint(tmp_path)
    out = tmp_path / "out"
    # 64 px keeps the default methods' many passes cheap; the command is the one at 224 px
    arguments = ["explain", str(photo), "--model", "resnet18", "--weights", str(checkpoint),
                 "--input-size", "64", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(arguments) == 0
    printed = capsys.readouterr()
    # no library of the model's task: Libra-CAM is left out in one line, the rest run
    assert printed.err.count("\n") == 1 and "Libra-CAM left out" in printed.err
    assert "--library-data" in printed.err
    defaults = parse_names(None, METHODS, "--methods")
    for name in defaults:
        assert (f"\n{name} " in printed.out) == (name != "libracam"), name
    assert "photo.png: class " in printed.out  # a checkpoint carries no class names
    _png_is_a_picture(out / "explain.png")


def test_libra_cam_asked_for_without_a_library_is_refused_before_any_model_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import captum_cams.kit.cli as cli

    def no_model(*args: object) -> None:
        raise AssertionError("a model was loaded before Libra-CAM was refused")

    monkeypatch.setattr(cli, "_model_and_layer", no_model)
    photo = _random_photo(tmp_path)
    arguments = ["explain", str(photo), "--model", "resnet18", "--weights", "none",
                 "--methods", "gradcam,libracam", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert "Libra-CAM needs a reference library" in error and "--library-data FOLDER" in error
    assert not (tmp_path / "out").exists()


def test_untrained_networks_get_one_warning_and_labels_name_the_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photo = _random_photo(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing {i}\n" for i in range(1000)))
    base = ["explain", str(photo), "--model", "resnet18", "--methods", "gradcam",
            "--input-size", "64", "--out", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    assert main(base + ["--weights", "none", "--labels", str(labels)]) == 0
    printed = capsys.readouterr()
    warnings = printed.err.splitlines()
    assert len(warnings) == 1 and "resnet18 has random weights (--weights none)" in warnings[0]
    assert "photo.png: thing " in printed.out
    assert main(base) == 0  # no --weights: torchvision's architecture, untrained too
    assert "random weights (--weights not given)" in capsys.readouterr().err
    labels.write_text("cat\ndog\nbird\n")
    assert main(base + ["--weights", "none", "--labels", str(labels)]) == 2
    error = capsys.readouterr().err
    assert "--labels: " in error and "has 3 names but the model has 1000 outputs" in error
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", "{folder}/missing.py:build"], "--model: file not found"),
        (["--model", "{file}:nope"], "has no attribute 'nope' (it defines: build"),
        (["--model", "{file}:build", "--weights", "DEFAULT"], "is neither a checkpoint"),
        (["--model", "{file}:build", "--mean", "x"], "--mean: not numbers: 'x'"),
        (["--model", "{file}:build", "--std", "0"], "--std must be positive"),
        (["--model", "{file}:build", "--input-size", "0"], "--input-size must be at least 1"),
        (["--model", "{file}:build", "--labels", "{folder}/no.txt"], "--labels: file not found"),
        (["--model", "{file}:build", "--library-data", "{folder}/no"], "--library-data: folder"),
    ],
)
def test_bad_model_arguments_give_one_line_before_any_model(
    arguments: list, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    file = _factory(tmp_path).rpartition(":")[0]
    given = [argument.format(folder=tmp_path, file=file) for argument in arguments]
    out = ["--out", str(tmp_path / "out")]
    assert main(["benchmark", *given, "--data", str(tmp_path), *out]) == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "out").exists()
    assert main(["benchmark", "--model", f"{file}:build", *out]) == 2
    assert "--data is needed with --model" in capsys.readouterr().err
