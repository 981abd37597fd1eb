#!/usr/bin/env python3
"""The benchmark: its numbers are the metrics' own on the same maps, a registered method
is one line, and a 2-process torchrun writes exactly what one process writes."""

from pathlib import Path
from typing import Callable, List

import pytest
import torch
from captum.attr import LayerGradCam as CaptumLayerGradCam

from captum_cams import LayerGradCam, LayerGradCamPlusPlus
from captum_cams.kit.benchmark import (
    METHODS,
    METRICS,
    EmbeddedData,
    MethodSpec,
    format_table,
    parse_names,
    results_csv,
    run_benchmark,
)
from captum_cams.kit.cli import main
from captum_cams.kit.datasets import make_batch
from captum_cams.kit.inputs import InputError
from captum_cams.kit.models import embedded_default_layer, load_embedded_default
from captum_cams.metrics import (
    api_apd_auc,
    average_drop,
    bbox_score,
    boxes_to_masks,
    confidence_scores,
    threshold_sweep,
)
from captum_cams.tuning import threshold_fine_tuning


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_embedded_default()


def test_rows_are_the_metrics_of_the_methods_maps(model: torch.nn.Module) -> None:
    layer = embedded_default_layer(model)
    metrics = ["average_drop", "bbox", "api_apd_auc"]
    result = run_benchmark(
        model, layer, EmbeddedData(3, task="shapes"), ["gradcam", "gradcam++"], metrics,
        batch_size=2, progress=False,
    )  # fmt: skip
    batch = make_batch(3, split="test", seed=0)  # the same images, recomputed directly
    target = model(batch.images).argmax(1)
    masks = boxes_to_masks(batch.boxes, (64, 64))
    for name, cls in (("gradcam", LayerGradCam), ("gradcam++", LayerGradCamPlusPlus)):
        maps = cls(model, layer).attribute(batch.images, target=target, relu_attributions=True)
        rows = [row for row in result.rows if row["method"] == name]
        assert [row["index"] for row in rows] == [0, 1, 2]
        assert [row["target"] for row in rows] == target.tolist()
        assert [row["label"] for row in rows] == batch.labels.tolist()
        expected = {
            "average_drop": average_drop(model, batch.images, maps, target=target),
            "bbox": bbox_score(maps, masks),
        }
        sweep = threshold_sweep(model, batch.images, maps, target=target)
        expected["api_apd_auc"] = api_apd_auc(sweep, per_example=True)
        for metric, values in expected.items():
            got = torch.tensor([row[metric] for row in rows], dtype=torch.float64)
            torch.testing.assert_close(got, values.double(), rtol=1e-5, atol=1e-6)
            mean = result.summary[name][metric]
            assert mean == pytest.approx(float(got.mean()), abs=1e-12)
        dataset_auc = api_apd_auc((sweep.api.double(), sweep.apd.double()))
        assert result.summary[name]["api_apd_auc_of_mean_curve"] == pytest.approx(
            float(dataset_auc), abs=1e-5
        )
    table = format_table(result)
    headers = [line for line in table.splitlines() if line.startswith("| method")]
    assert [h.split("|")[2].strip() for h in headers] == ["AD % ↓", "Bbox % ↑", "API/APD AUC ↑"]
    ad = result.summary["gradcam++"]["average_drop"]
    assert ad is not None and f"| Grad-CAM++ | {ad * 100:.2f} ± " in table
    assert results_csv(result).count("\n") == 7


def test_a_new_method_is_one_registry_line(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        METHODS,
        "captum-gradcam",
        MethodSpec(
            "Captum Grad-CAM",
            lambda c: CaptumLayerGradCam(c.model, c.layer),
            attribute_kwargs={"relu_attributions": True},
        ),
    )
    result = run_benchmark(
        model, embedded_default_layer(model), EmbeddedData(2, task="shapes"),
        ["gradcam", "captum-gradcam"], ["energy_pg", "average_drop"], progress=False,
    )  # fmt: skip
    ours = [row for row in result.rows if row["method"] == "gradcam"]
    captums = [row for row in result.rows if row["method"] == "captum-gradcam"]
    for a, b in zip(ours, captums):
        assert a["energy_pg"] == pytest.approx(b["energy_pg"], abs=1e-6)
        assert a["average_drop"] == pytest.approx(b["average_drop"], abs=1e-6)


def test_names_are_checked() -> None:
    assert parse_names("Scorecam, gradcam,scorecam", METHODS, "--methods") == [
        "scorecam",
        "gradcam",
    ]
    assert parse_names("all", METRICS, "--metrics") == list(METRICS)
    with pytest.raises(InputError, match="--metrics: unknown nope"):
        parse_names("bbox,nope", METRICS, "--metrics")


def test_box_metric_without_boxes_is_refused(model: torch.nn.Module) -> None:
    data = EmbeddedData(2, task="shapes")
    data.has_boxes = False
    with pytest.raises(InputError, match="bbox needs boxes"):
        run_benchmark(model, embedded_default_layer(model), data, ["gradcam"], ["bbox"])


_SCRIPT = """
import sys
import torch
torch.set_num_threads(1)
from captum_cams.kit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_torchrun_two_processes_write_the_single_process_files(
    tmp_path: Path, torchrun: Callable[..., None]
) -> None:
    script = tmp_path / "run_cli.py"
    script.write_text(_SCRIPT)
    arguments = [
        "benchmark", "--methods", "gradcam,shapcam", "--metrics", "average_drop,bbox,tft_rpi",
        "--num-images", "5", "--batch-size", "2", "--quiet",
    ]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the torchrun processes
    try:
        assert main([*arguments, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    torchrun(script, *arguments, "--out", str(tmp_path / "two"), nproc=2)
    for name in ("results.json", "scores.csv"):
        single = (tmp_path / "one" / name).read_bytes()
        assert single == (tmp_path / "two" / name).read_bytes(), name
    assert (tmp_path / "one" / "scores.csv").read_text().count("\n") == 11
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "overlay_grid.png", "results.json", "rpi_curves.png", "scores.csv",
    ]  # fmt: skip


def test_libra_cam_library_comes_from_the_training_split(model: torch.nn.Module) -> None:
    from torch.utils.data import DataLoader

    from captum_cams import LayerLibraCam, ReferenceLibrary
    from captum_cams.kit.benchmark import LIBRARY_IMAGES, MethodContext, libra_cam_with_library
    from captum_cams.kit.datasets import GroundTruthShapes

    layer = embedded_default_layer(model)
    context = MethodContext(
        model, layer, EmbeddedData(2, task="shapes"), torch.device("cpu"), seed=3
    )
    libra = libra_cam_with_library(context)
    direct = ReferenceLibrary.build(
        model,
        layer,
        DataLoader(GroundTruthShapes(LIBRARY_IMAGES, split="train", seed=3), batch_size=7),
        num_classes=10,
        progress=False,
    )
    assert isinstance(libra, LayerLibraCam)
    assert torch.equal(libra.library.activations, direct.activations)
    for ours, theirs in zip(libra.library.class_indices, direct.class_indices):
        assert torch.equal(ours, theirs)


def test_each_masked_copy_is_evaluated_once(model: torch.nn.Module) -> None:
    layer = embedded_default_layer(model)
    metrics = ["average_drop", "increase_in_confidence", "api", "drop_rate", "api_apd_auc",
               "tft_rpi"]  # fmt: skip
    rows: List[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: rows.append(args[0].shape[0]))
    try:
        result = run_benchmark(
            model, layer, EmbeddedData(3, task="shapes"), ["gradcam", "tft"], metrics,
            batch_size=3, progress=False,
        )  # fmt: skip
    finally:
        handle.remove()
    n = 3
    batch = make_batch(3, split="test", seed=0)
    target = model(batch.images).argmax(1)
    maps = LayerGradCam(model, layer).attribute(batch.images, target=target, relu_attributions=True)
    tuned = threshold_fine_tuning(model, batch.images, maps, target=target)
    # the images once (the runner's pass; every metric takes their outputs from it), the
    # Grad-CAM pass of each method and TFT's 10 thresholds; then per method's maps the
    # sweep's 11 masks (AD, IC, API and DR read its t = 0, the soft map itself) and TFT's
    # 10: of Grad-CAM's maps the TFT method's own sweep, of TFT's maps a new one unless
    # TFT left every map as it was (the same maps: the same sweep again)
    unchanged = bool(torch.isnan(tuned.thresholds).all())
    assert sum(rows) == n + 2 * n + 10 * n + 2 * 11 * n + (0 if unchanged else 10 * n)
    got = {
        m: torch.tensor([r[m] for r in result.rows if r["method"] == "gradcam"]).double()
        for m in metrics
    }
    scores = confidence_scores(model, batch.images, maps, target=target)
    expected = {
        "average_drop": scores.average_drop,
        "increase_in_confidence": scores.increase_in_confidence,
        "api": scores.average_probability_increase,
        "drop_rate": scores.drop_rate,
        "tft_rpi": tuned.rpi_curves.max(dim=1).values,
    }
    for metric, values in expected.items():
        torch.testing.assert_close(got[metric], values.double(), rtol=1e-5, atol=1e-6)
