#!/usr/bin/env python3
"""Every metric and tuning step that min-max scales a map gives the same result for
the map and the same map times 1e-12 (or 1e12): mm has no absolute epsilon."""

from typing import Any, Callable, Dict

import pytest
import torch
import torch.nn as nn
from torch import Tensor

from captum_cams import metrics
from captum_cams.tuning import reference_filtering, threshold_calibration, threshold_fine_tuning


def _model() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 5),
        )
        .double()
        .eval()
    )


N, SIZE = 3, 8
X = torch.rand(N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
MAPS = torch.rand(N, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
TARGET = [0, 3, 1]
BOXES = torch.zeros(N, SIZE, SIZE, dtype=torch.bool)
BOXES[:, 2:6, 1:5] = True
REGIONS = torch.zeros(N, 3, SIZE, SIZE, dtype=torch.bool)
REGIONS[:, 0, :4], REGIONS[:, 1, 4:, :4], REGIONS[:, 2, 4:, 4:] = True, True, True
RELIANCE = torch.tensor([[0.5, 0.1, 0.0], [0.2, 0.3, 0.4], [0.0, 0.6, 0.1]], dtype=torch.float64)

PERTURBATION: Dict[str, Callable[..., Any]] = {
    name: getattr(metrics, name)
    for name in (
        "average_drop",
        "increase_in_confidence",
        "average_probability_increase",
        "drop_rate",
        "average_drop_in_deletion",
        "relative_probability_increase",
        "threshold_sweep",
        "insertion_auc",
        "deletion_auc",
        "remove_and_classify",
    )
}
PERTURBATION["threshold_fine_tuning"] = threshold_fine_tuning
PERTURBATION["threshold_calibration"] = threshold_calibration

LOCALIZATION: Dict[str, Callable[[Tensor], Any]] = {
    "energy_pointing_game": lambda maps: metrics.energy_pointing_game(maps, BOXES),
    "bbox_score": lambda maps: metrics.bbox_score(maps, BOXES),
    "pointing_game": lambda maps: metrics.pointing_game(maps, BOXES, tolerance=1),
    "pixel_average_precision": lambda maps: metrics.pixel_average_precision(maps, BOXES),
    "mean_pixel_average_precision": lambda maps: metrics.mean_pixel_average_precision(
        [(maps, BOXES)]
    ),
    "box_accuracy": lambda maps: metrics.box_accuracy(
        maps, torch.tensor([[1, 2, 5, 6]] * N), image_size=(SIZE, SIZE)
    ),
    "reliance_rank_correlation": lambda maps: metrics.reliance_rank_correlation(
        maps, REGIONS, RELIANCE
    ),
    "ignored_region_mass": lambda maps: metrics.ignored_region_mass(maps, REGIONS, RELIANCE),
}


def _assert_same(ours: Any, reference: Any) -> None:
    if isinstance(reference, Tensor):
        torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-12, equal_nan=True)
    elif isinstance(reference, tuple):
        assert len(ours) == len(reference)
        for a, b in zip(ours, reference):
            _assert_same(a, b)
    else:
        assert ours == reference


@pytest.mark.parametrize("scale", [1e-12, 1e12])
@pytest.mark.parametrize("name", sorted(PERTURBATION))
def test_perturbation_metrics_do_not_depend_on_the_maps_units(name: str, scale: float) -> None:
    metric = PERTURBATION[name]
    reference = metric(_model(), X, MAPS, target=TARGET)
    _assert_same(metric(_model(), X, MAPS * scale, target=TARGET), reference)


@pytest.mark.parametrize("scale", [1e-12, 1e12])
@pytest.mark.parametrize("name", sorted(LOCALIZATION))
def test_localization_metrics_do_not_depend_on_the_maps_units(name: str, scale: float) -> None:
    reference = LOCALIZATION[name](MAPS)
    _assert_same(LOCALIZATION[name](MAPS * scale), reference)


def test_reference_filtering_does_not_depend_on_the_candidates_units() -> None:
    candidates = torch.rand(N, 4, 4, 4, generator=torch.Generator().manual_seed(3)).double()
    reference = reference_filtering(_model(), X, candidates, target=TARGET)
    # each candidate scaled on its own: every one is normalised by itself
    scales = torch.tensor([1e-12, 1.0, 1e9, 3e-7], dtype=torch.float64).view(1, 4, 1, 1)
    _assert_same(reference_filtering(_model(), X, candidates * scales, target=TARGET), reference)


def test_tiny_maps_were_flattened_by_an_absolute_floor() -> None:
    # what the scale-free mm fixes: at 1e-12 a map still separates its pixels
    sweep = metrics.threshold_sweep(_model(), X, MAPS * 1e-12, target=TARGET)
    kept = metrics.threshold_sweep(_model(), X, MAPS, target=TARGET)
    assert not torch.equal(sweep.api[:, 1], sweep.api[:, -1])  # t = 0.1 and t = 1 differ
    torch.testing.assert_close(sweep.api, kept.api)
