#!/usr/bin/env python3
import math

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from captum_cams.metrics.reliance import (
    ignored_region_mass,
    intervention_reliance,
    reliance_rank_correlation,
)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers, nn.Linear(4, 5)).double().eval()


def _regions() -> torch.Tensor:
    # One 4 x 4 image, three regions: the left column pair, the top-right block, one pixel.
    masks = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    masks[0, 0, :, :2] = True
    masks[0, 1, :2, 2:] = True
    masks[0, 2, 3, 3] = True
    return masks


def test_rank_correlation_is_spearman_of_region_densities() -> None:
    masks = _regions()
    maps = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    maps[0, 0, :, :2] = 0.2
    maps[0, 0, :2, 2:] = 1.0
    maps[0, 0, 3, 3] = 0.5
    reliance = torch.tensor([[0.3, 0.2, 0.05]], dtype=torch.float64)
    # mm leaves these maps as they are (min 0, max 1): densities 0.2, 1.0, 0.5
    expected = spearmanr([0.2, 1.0, 0.5], [0.3, 0.2, 0.05]).statistic
    value = reliance_rank_correlation(maps, masks, reliance, tolerance=0.0)
    assert value.dtype == torch.float64 and abs(float(value[0]) - expected) < 1e-12
    # within the tolerance the third region counts as 0 reliance: same order here
    assert abs(float(reliance_rank_correlation(maps, masks, reliance, 0.1)[0]) - expected) < 1e-12


def test_an_oracle_map_scores_one_and_ties_are_averaged() -> None:
    masks = _regions().repeat(2, 1, 1, 1)
    reliance = torch.tensor([[0.4, -0.2, 0.004], [0.0, 0.3, 0.3]], dtype=torch.float64)
    truth = torch.where(reliance.abs() <= 0.01, torch.zeros_like(reliance), reliance)
    oracle = (masks.double() * truth[:, :, None, None]).sum(1, keepdim=True) - 7.0
    values = reliance_rank_correlation(oracle, masks, reliance)
    assert torch.allclose(values, torch.ones(2, dtype=torch.float64), atol=1e-12)
    flipped = reliance_rank_correlation(-oracle, masks, reliance)
    assert torch.allclose(flipped, -torch.ones(2, dtype=torch.float64), atol=1e-12)


def test_undefined_truth_gives_nan_and_a_flat_map_zero() -> None:
    masks = _regions()
    equal = torch.tensor([[0.2, 0.2, 0.2]], dtype=torch.float64)
    assert math.isnan(float(reliance_rank_correlation(torch.rand(1, 1, 2, 2), masks, equal)[0]))
    one_region = masks.clone()
    one_region[0, 1:] = False
    varied = torch.tensor([[0.5, 0.1, 0.0]], dtype=torch.float64)
    assert math.isnan(
        float(reliance_rank_correlation(torch.rand(1, 1, 2, 2), one_region, varied)[0])
    )
    assert float(reliance_rank_correlation(torch.ones(1, 1, 2, 2), masks, varied)[0]) == 0.0


def test_ignored_mass_by_hand() -> None:
    masks = _regions()
    maps = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    maps[0, 0, :, :2] = 1.0  # 8 pixels of mass 1
    maps[0, 0, 3, 3] = 0.5  # the ignored pixel region
    maps[0, 0, 0, 3] = 0.25
    reliance = torch.tensor([[0.3, 0.2, 0.001]], dtype=torch.float64)
    share = ignored_region_mass(maps, masks, reliance)
    assert abs(float(share[0]) - 0.5 / (8 + 0.5 + 0.25)) < 1e-12
    # a constant map is spread evenly: the share is the ignored area, 1 of 16 pixels
    assert (
        abs(float(ignored_region_mass(torch.ones(1, 1, 4, 4), masks, reliance)[0]) - 1 / 16) < 1e-12
    )
    # nothing ignored: nothing misplaced
    assert float(ignored_region_mass(maps, masks, torch.ones(1, 3))[0]) == 0.0


def test_intervention_reliance_is_the_drop_of_the_probability() -> None:
    model = small_cnn()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 8, 8, generator=generator, dtype=torch.float64)
    intervened = torch.rand(3, 4, 3, 8, 8, generator=generator, dtype=torch.float64)
    target = torch.tensor([0, 3, 1])
    reliance = intervention_reliance(model, images, intervened, target, max_examples_per_batch=5)
    with torch.no_grad():
        p = torch.softmax(model(images), 1)[torch.arange(3), target]
        q = torch.softmax(model(intervened.flatten(0, 1)), 1).view(3, 4, -1)
    expected = p[:, None] - q[torch.arange(3)[:, None], torch.arange(4)[None], target[:, None]]
    assert torch.allclose(reliance, expected, atol=1e-12, rtol=0)
    logit = intervention_reliance(model, images, intervened, target, score="logit")
    with torch.no_grad():
        z = model(images)[torch.arange(3), target]
        zr = model(intervened.flatten(0, 1)).view(3, 4, -1)
    assert torch.allclose(
        logit, z[:, None] - zr[torch.arange(3)[:, None], torch.arange(4)[None], target[:, None]]
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: reliance_rank_correlation(
                torch.rand(1, 1, 2, 2), torch.ones(1, 3, 4), torch.zeros(1, 3)
            ),
            "region_masks",
        ),
        (
            lambda: reliance_rank_correlation(
                torch.rand(1, 1, 2, 2), _regions(), torch.zeros(1, 2)
            ),
            "reliance",
        ),
        (
            lambda: ignored_region_mass(
                torch.rand(1, 1, 2, 2), _regions(), torch.full((1, 3), float("nan"))
            ),
            "reliance",
        ),
        (
            lambda: ignored_region_mass(
                torch.rand(1, 1, 2, 2), _regions(), torch.zeros(1, 3), -1.0
            ),
            "tolerance",
        ),
        (
            lambda: ignored_region_mass(
                torch.rand(1, 1, 2, 2), _regions(), torch.zeros(1, 3), float("inf")
            ),
            "tolerance",
        ),
        (
            lambda: ignored_region_mass(torch.rand(2, 1, 2, 2), _regions(), torch.zeros(1, 3)),
            "attributions",
        ),
        (
            lambda: intervention_reliance(
                small_cnn(), torch.rand(2, 3, 8, 8).double(), torch.rand(2, 3, 8, 8).double()
            ),
            "intervened",
        ),
        (
            lambda: intervention_reliance(
                small_cnn(),
                torch.rand(1, 3, 8, 8).double(),
                torch.full((1, 2, 3, 8, 8), float("inf")).double(),
            ),
            "intervened",
        ),
    ],
)
def test_bad_arguments_name_themselves(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.fixture(scope="module")
def embedded_truth():
    from captum_cams.kit.datasets import ClutteredShapes
    from captum_cams.kit.models import load_embedded_cluttered

    model = load_embedded_cluttered()
    data = ClutteredShapes(120, split="test", seed=0, return_annotations=True)
    items = [data[i] for i in range(len(data))]
    images = torch.stack([item[0] for item in items])
    regions = torch.stack([item[2]["region_masks"] for item in items])
    intervened = torch.stack([data.interventions(i) for i in range(len(data))])
    reliance = intervention_reliance(model, images, intervened, max_examples_per_batch=512)
    return regions, reliance


def test_on_the_embedded_model_an_oracle_scores_one_and_random_maps_zero(embedded_truth) -> None:
    from captum_cams.metrics.reliance import DEFAULT_RELIANCE_TOLERANCE

    regions, reliance = embedded_truth
    truth = torch.where(reliance.abs() <= DEFAULT_RELIANCE_TOLERANCE, 0.0, reliance)
    oracle = (regions.double() * truth[:, :, None, None].double()).sum(1, keepdim=True)
    scores = reliance_rank_correlation(oracle, regions, reliance)
    defined = ~scores.isnan()
    assert int(defined.sum()) >= 100  # every image has a class part or a relied-on region
    assert torch.allclose(scores[defined], torch.ones_like(scores[defined]), atol=1e-12)
    generator = torch.Generator().manual_seed(0)
    random_maps = torch.rand(len(regions), 1, 16, 16, generator=generator)
    values = reliance_rank_correlation(random_maps, regions, reliance)
    values = values[~values.isnan()]
    half_width = 1.96 * float(values.std()) / len(values) ** 0.5
    assert abs(float(values.mean())) < half_width  # the 95 % interval holds 0
    positive = oracle.clamp_min(0)
    relied_on = positive.flatten(1).amax(1) > 0  # e.g. not "plain" objects: nothing to lose
    assert int(relied_on.sum()) >= 80
    share = ignored_region_mass(positive, regions, reliance)[relied_on]
    assert float(share.max()) == 0.0  # the oracle puts no mass on what the model ignores
