#!/usr/bin/env python3
"""The metric registry: each spec's compute gives what the metric function gives on the
same inputs, the four soft-mask scores agree whether they come from their own pass or
the threshold sweep's ``t = 0``, shared passes run once, and ``unmet`` names what the
data lacks."""

from typing import Any, Dict, Tuple

import pytest
import torch
import torch.nn as nn

from captum_cams.kit.benchmark import METRICS, EmbeddedData, MetricOutput, MetricSpec
from captum_cams.kit.benchmark import metrics as metrics_module
from captum_cams.kit.benchmark.metrics import MetricInputs
from captum_cams.metrics import (
    bbox_score,
    confidence_scores,
    deletion_auc,
    energy_pointing_game,
    insertion_auc,
    pointing_game,
    threshold_sweep,
)

SIZE = 16


def _inputs(**overrides: Any) -> MetricInputs:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 5),
    ).double().eval()  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, SIZE, SIZE, generator=generator, dtype=torch.float64)
    maps = torch.rand(3, 1, SIZE, SIZE, generator=generator, dtype=torch.float64)
    masks = torch.zeros(3, 1, SIZE, SIZE, dtype=torch.bool)
    masks[:, :, 2:9, 3:12] = True
    values: Dict[str, Any] = dict(
        model=model, images=images, maps=maps, target=torch.tensor([0, 3, 4]), masks=masks,
        max_examples_per_batch=None,
    )  # fmt: skip
    values.update(overrides)
    return MetricInputs(**values)


def test_soft_mask_scores_equal_confidence_scores() -> None:
    m = _inputs()
    direct = confidence_scores(m.model, m.images, m.maps, target=m.target)
    expected = {
        "average_drop": direct.average_drop,
        "increase_in_confidence": direct.increase_in_confidence,
        "api": direct.average_probability_increase,
        "drop_rate": direct.drop_rate,
    }
    for name, values in expected.items():
        torch.testing.assert_close(METRICS[name].compute(m).values, values, rtol=0, atol=0)
    # read from the sweep's t = 0 column when the sweep runs anyway: the same numbers
    requested = _inputs(requested=("api_apd_auc", "average_drop"), shared={})
    for name, values in expected.items():
        torch.testing.assert_close(
            METRICS[name].compute(requested).values, values, rtol=1e-12, atol=1e-12
        )


def test_curves_and_localisation_equal_their_functions() -> None:
    m = _inputs()
    for name, function in [("insertion_auc", insertion_auc), ("deletion_auc", deletion_auc)]:
        expected = function(m.model, m.images, m.maps, target=m.target)
        torch.testing.assert_close(METRICS[name].compute(m).values, expected, rtol=0, atol=0)
    for name, function in [("energy_pg", energy_pointing_game), ("bbox", bbox_score)]:
        expected = function(m.maps, m.masks)
        torch.testing.assert_close(METRICS[name].compute(m).values, expected, rtol=0, atol=0)
    # the pointing game's 15 pixels at 224 px scale with the images
    expected = pointing_game(m.maps, m.masks, tolerance=15.0 * SIZE / 224.0)
    torch.testing.assert_close(METRICS["pointing_game"].compute(m).values, expected)
    sweep = threshold_sweep(m.model, m.images, m.maps, target=m.target)
    output = METRICS["api_apd_auc"].compute(m)
    torch.testing.assert_close(output.curves["api"], sweep.api, rtol=0, atol=0)
    torch.testing.assert_close(output.curves["apd"], sweep.apd, rtol=0, atol=0)
    torch.testing.assert_close(output.grid, sweep.thresholds, rtol=0, atol=0)


def test_the_shared_sweep_runs_once_for_every_metric_of_the_maps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return threshold_sweep(*args, **kwargs)

    monkeypatch.setattr(metrics_module, "threshold_sweep", counting)
    shared: Dict[str, Any] = {}
    requested = ("api_apd_auc", "average_drop", "api")
    m = _inputs(requested=requested, shared=shared)
    for name in requested:
        METRICS[name].compute(m)
    assert len(calls) == 1 and "threshold_sweep" in shared
    # without a shared dict every call makes its own pass
    m = _inputs(requested=requested)
    METRICS["api_apd_auc"].compute(m)
    METRICS["average_drop"].compute(m)
    assert len(calls) == 3


def _always(m: MetricInputs) -> MetricOutput:
    return MetricOutput(m.target.double())


class _Data(EmbeddedData):
    """Embedded images that claim the given boxes and extras."""

    def __init__(self, has_boxes: bool, provides: Tuple[str, ...]) -> None:
        super().__init__(1, task="shapes")
        self.has_boxes = has_boxes
        self._provides = provides

    @property
    def provides(self) -> Tuple[str, ...]:
        return self._provides


def test_unmet_names_what_the_data_lacks() -> None:
    data = _Data(False, ("region_masks",))
    assert METRICS["bbox"].unmet(data) == ["boxes"]
    assert METRICS["average_drop"].unmet(data) == []
    assert METRICS["reliance_rank"].unmet(data) == ["reliance"]
    both = MetricSpec("both", _always, needs_boxes=True, needs=("reliance", "region_masks"))
    assert both.unmet(data) == ["boxes", "reliance"]
    data = _Data(True, ("region_masks", "reliance"))
    assert both.unmet(data) == [] and METRICS["reliance_rank"].unmet(data) == []
