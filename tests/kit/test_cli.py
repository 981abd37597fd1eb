#!/usr/bin/env python3
"""The command line: the main job (the benchmark) on the embedded default, explain, real
inputs, and one-line errors for every bad argument."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from captum_cams.kit.cli import DEFAULT_NUM_IMAGES, build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _png_is_a_picture(path: Path, min_width: int = 300) -> None:
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.size[0] > min_width
        assert len(np.unique(np.asarray(image.convert("L")))) > 50


def test_no_command_is_the_benchmark_with_its_default_size() -> None:
    args = build_parser().parse_args([])
    assert args.command is None and args.num_images is None and args.model == "embedded"
    assert args.methods is None and args.metrics is None  # every method, every metric
    assert DEFAULT_NUM_IMAGES == 48  # measured: see the README's "Command line"


def test_main_job_writes_table_scores_and_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status = main(
        ["--methods", "gradcam,tft", "--num-images", "2", "--batch-size", "1", "--out",
         str(tmp_path), "--quiet"]
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "| Grad-CAM + TFT |" in printed and "Bbox % ↑" in printed and "AD % ↓" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == ["gradcam", "tft"]
    # every metric applies to the embedded default (boxes, region masks, reliance)
    assert set(results["metrics"]) == {
        "average_drop", "increase_in_confidence", "api", "drop_rate", "insertion_auc",
        "deletion_auc", "api_apd_auc", "tft_rpi", "energy_pg", "bbox", "pointing_game",
        "reliance_rank", "ignored_mass",
    }  # fmt: skip
    assert len(results["examples"]) == 4
    cell = results["statistics"]["tft"]["bbox"]
    assert set(cell) == {"mean", "ci_low", "ci_high", "n", "tied_with_best"} and cell["n"] == 2
    assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]
    assert cell["mean"] == pytest.approx(results["summary"]["tft"]["bbox"], abs=1e-12)
    assert "* best, or tied with the best" in printed and "do not separate" in printed
    assert max(len(line) for line in printed.splitlines() if str(tmp_path) not in line) <= 120
    assert "captum-cams benchmark: 2 images, model embedded, layer features.2, 2 methods" in printed
    lines = printed.splitlines()
    summary = next(i for i, line in enumerate(lines) if " s in all; " in line)
    assert "(" not in lines[summary] + lines[summary + 1] and lines[summary + 1] == (
        "  results.json, scores.csv, overlay_grid.png, threshold_sweep.png, rpi_curves.png"
    )
    assert [row["index"] for row in results["examples"]] == [0, 1, 0, 1]
    csv_lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("index,image,label,target,method")
    assert len(results["curves"]["tft"]["tft_rpi.rpi"]["mean"]) == 10
    for name in ("overlay_grid.png", "threshold_sweep.png", "rpi_curves.png"):
        _png_is_a_picture(tmp_path / name)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert (tmp_path / "results.json").stat().st_mode & 0o044  # readable by others


def test_explain_an_image_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = (torch.rand(40, 50, 3) * 255).to(torch.uint8).numpy()
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    assert main(["explain", str(path), "--methods", "layercam", "--out", str(tmp_path)]) == 0
    _png_is_a_picture(tmp_path / "explain.png", min_width=200)
    printed = capsys.readouterr()
    assert "layercam" in printed.out
    assert "model embedded, layer features.2, 1 image\n" in printed.out
    assert "ms / image" in printed.out
    # the embedded model on a photo: one warning line naming the way out
    warnings = [line for line in printed.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "trained on synthetic shapes only" in warnings[0]
    assert "--model" in warnings[0] and "--weights path/to/checkpoint.pt" in warnings[0]
    assert "captum-cams explain" in printed.err  # the progress bar, on stderr


def test_explain_streams_a_folder_in_batches_with_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from captum_cams.kit.benchmark import FolderData

    data = _image_folder(tmp_path, count=5)
    loaded: list = []
    original = FolderData.load

    def load(self: FolderData, indices: object) -> object:
        loaded.append(list(indices))  # type: ignore[call-overload]
        return original(self, indices)  # type: ignore[arg-type]

    monkeypatch.setattr(FolderData, "load", load)
    arguments = ["explain", str(data), "--methods", "gradcam,scorecam", "--batch-size", "2",
                 "--out", str(tmp_path)]  # fmt: skip
    assert main(arguments) == 0
    assert loaded == [[0, 1], [2, 3], [4]]  # never more than a batch in memory
    printed = capsys.readouterr()
    assert printed.err.count("warning") == 1  # once, not once per batch
    assert "10/10" in printed.err  # 5 images x 2 methods on the bar
    assert "embedded, layer features.2, 5 images" in printed.out
    assert main(arguments + ["--quiet"]) == 0
    assert "captum-cams explain" not in capsys.readouterr().err


def test_explain_the_embedded_dataset_scores_the_box(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["explain", "--methods", "gradcam,gradcam++", "--num-images", "2", "--out"]
    assert main(args + [str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "gradcam++" in printed and "energy in box" in printed
    _png_is_a_picture(tmp_path / "explain.png")


def _image_folder(root: Path, count: int = 2) -> Path:
    generator = torch.Generator().manual_seed(3)
    for i in range(count):
        folder = root / "images" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (torch.rand(48, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    return root / "images"


def _voc(folder: Path, stem: str, size: tuple, box: tuple) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.xml").write_text(
        f"<annotation><size><width>{size[1]}</width><height>{size[0]}</height></size>"
        f"<object><name>thing</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>"
    )


def test_benchmark_on_a_torchvision_model_folder_and_voc_boxes(tmp_path: Path) -> None:
    data = _image_folder(tmp_path)
    for i in range(2):
        _voc(tmp_path / "Annotations", f"img{i}", (48, 64), (10, 8, 40, 30))
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None, num_classes=7)
    checkpoint = tmp_path / "resnet18.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    out = tmp_path / "out"
    arguments = [
        "benchmark", "--model", "resnet18", "--weights", str(checkpoint), "--layer", "layer4",
        "--data", str(data), "--annotations", str(tmp_path / "Annotations"),
        "--methods", "gradcam", "--metrics", "average_drop,energy_pg", "--out", str(out),
        "--quiet",
    ]  # fmt: skip
    # the checkpoint has 7 classes: it does not fit resnet18's 1000 outputs
    assert main(arguments) == 2
    model = torchvision.models.resnet18(weights=None)
    torch.save(model.state_dict(), checkpoint)
    assert main(arguments) == 0
    rows = json.loads((out / "results.json").read_text())["examples"]
    assert [row["image"] for row in rows] == ["class0/img0.png", "class1/img1.png"]
    assert all(0.0 <= row["energy_pg"] <= 1.0 and row["label"] is None for row in rows)
    _png_is_a_picture(out / "overlay_grid.png", min_width=150)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--methods", "nosuchcam"], "--methods: unknown nosuchcam; choose from gradcam"),
        (["--metrics", "accuracy"], "--metrics: unknown accuracy"),
        (["--num-images", "0"], "--num-images must be at least 1; got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--data", "/no/such/folder"], "--data: folder not found: /no/such/folder"),
        (["--layer", "features.99"], "--layer: no module named 'features.99'"),
        (["--layer", "fc"], "--layer: 'fc' outputs (1, 8), not an N x C x h x w feature map"),
        (["--model", "resnet1"], "--model: unknown model 'resnet1' (did you mean resnet18"),
        (["--weights", "/no/such.pt"], "--weights: checkpoint not found: /no/such.pt"),
        (["--model", "resnet18", "--weights", "NOPE"], "--weights: 'NOPE' is not a weights enum"),
        (["--device", "toaster"], "--device: not a device: 'toaster'"),
        (["--annotations", "/no/such"], "--annotations needs --data"),
        (["--num-images", "x"], "argument --num-images: invalid int value: 'x'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["explain", "/no/such/file.png"], "image not found: /no/such/file.png"),
        (["explain", "--methods", ""], "--methods: none given"),
    ],
)
def test_bad_arguments_give_one_line(
    arguments: list, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(arguments + ["--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "out").exists()  # nothing written


def test_folder_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _image_folder(tmp_path)
    (data / "class0" / "broken.jpg").write_text("not an image")
    base = ["--model", "resnet18", "--weights", "none", "--methods", "gradcam", "--quiet"]
    out = ["--out", str(tmp_path / "out")]
    assert main(base + ["--data", str(data)] + out) == 2
    assert "not a readable image" in capsys.readouterr().err
    (data / "class0" / "broken.jpg").unlink()
    assert main(base + ["--data", str(data), "--annotations", str(tmp_path)] + out) == 2
    assert "--annotations: no annotation" in capsys.readouterr().err
    assert main(base + ["--data", str(data), "--metrics", "bbox"] + out) == 2
    assert "--metrics: bbox needs boxes; give --annotations" in capsys.readouterr().err
    assert main(base + ["--data", str(tmp_path / "out")] + out) == 2  # not a folder yet
    assert not (tmp_path / "out").exists()


def test_cuda_asked_for_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_no_traceback_from_the_installed_command(tmp_path: Path) -> None:
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
    assert "not a readable image" in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [[], ["explain"]], ids=["benchmark", "explain"])
@pytest.mark.parametrize("where", ["is a file", "under a file", "not writable"])
def test_a_bad_out_is_one_line_before_any_model(
    command: list, where: str, tmp_path: Path, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import captum_cams.kit.cli as cli

    def no_model(*args: object) -> None:
        raise AssertionError("a model was loaded before --out was checked")

    monkeypatch.setattr(cli, "_model_and_layer", no_model)
    a_file = tmp_path / "results.json"
    a_file.write_text("an old result")
    if where == "not writable" and not Path("/proc").is_dir():
        pytest.skip("needs /proc, which nobody can write into")
    out = {"is a file": a_file, "under a file": a_file / "out", "not writable": Path("/proc/o")}
    assert main([*command, "--methods", "gradcam", "--out", str(out[where])]) == 2
    error = capsys.readouterr().err
    assert "--out: " in error and error.count("\n") == 1 and "Traceback" not in error
    assert a_file.read_text() == "an old result"


_MEMORY_CAP = 4 * 2**30  # address space: torch maps ~3 GB of libraries before any work


def _capped(arguments: list, cwd: Path) -> subprocess.Popen:
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_CAP, _MEMORY_CAP))
        # Ctrl-C as at a terminal: a suite started in the background of a script
        # inherits SIGINT ignored, and a child would never see the test's signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    threads = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "captum_cams", *arguments],
        cwd=cwd,
        env={**os.environ, **threads, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=cap,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and SIGINT")
def test_absurd_num_images_streams_under_a_memory_cap_and_ctrl_c_exits_130(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("the previous run")
    process = _capped(
        ["benchmark", "--num-images", "1000000000", "--methods", "gradcam", "--metrics",
         "average_drop", "--out", str(out)],
        tmp_path,
    )  # fmt: skip
    seen = bytearray()

    def read() -> None:
        assert process.stderr is not None
        for chunk in iter(lambda: process.stderr.read1(256), b""):  # type: ignore[union-attr]
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 240  # starting torch on a busy machine
    progress = re.compile(rb"\| +([2-9]|\d\d+)/62500000 ")
    try:
        while not progress.search(bytes(seen)) and process.poll() is None:
            assert time.monotonic() < deadline, bytes(seen)[-2000:]
            time.sleep(0.2)
        assert process.poll() is None, bytes(seen)[-2000:]  # working, within the cap
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    text = bytes(seen).decode(errors="replace")
    assert "Traceback" not in text and text.rstrip().endswith("captum-cams: interrupted")
    assert (out / "results.json").read_text() == "the previous run"
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert not list(tmp_path.glob(".captum-cams-*"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS")
def test_an_absurd_annotation_size_is_one_line_under_a_memory_cap(tmp_path: Path) -> None:
    data = _image_folder(tmp_path, count=1)
    _voc(tmp_path / "Annotations", "img0", (60000, 60000), (10, 8, 40, 30))
    process = _capped(
        ["benchmark", "--data", str(data), "--annotations", str(tmp_path / "Annotations"),
         "--methods", "gradcam", "--metrics", "energy_pg", "--quiet", "--out",
         str(tmp_path / "out")],
        tmp_path,
    )  # fmt: skip
    _, error = process.communicate(timeout=300)
    text = error.decode(errors="replace")
    assert process.returncode == 2, text[-2000:]
    assert "--annotations" in text and "60000" in text
    assert text.count("\n") == 1 and "Traceback" not in text
    assert not (tmp_path / "out").exists()
