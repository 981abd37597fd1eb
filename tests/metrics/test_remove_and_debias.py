#!/usr/bin/env python3
"""ROAD: the imputer equals pytorch-grad-cam's and Quantus's and solves its equations;
the metric equals pytorch-grad-cam's ROADMostRelevantFirst / ROADLeastRelevantFirst on
the same maps with the same noise draws; exact removal counts; bad input is named."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from pytorch_grad_cam.metrics.road import (
    NoisyLinearImputer,
    ROADLeastRelevantFirst,
    ROADMostRelevantFirst,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from captum_cams._utils.maps import minmax_normalize
from captum_cams.metrics import noisy_linear_imputation, road

TARGETS = [3, 17]


def _maps(size: int = 32) -> torch.Tensor:
    coarse = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(4))
    up = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return minmax_normalize(up)  # min 0 and max 1 exactly: mm leaves it as it is


def test_imputation_solves_the_neighbour_equations_by_hand() -> None:
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    removed = torch.zeros(1, 6, 5, dtype=torch.bool)
    removed[0, 0, 0] = removed[0, 2:4, 1:4] = removed[0, 5, 4] = True
    filled = noisy_linear_imputation(x, removed, noise=0.0)[0]
    torch.testing.assert_close(filled[:, ~removed[0]], x[0][:, ~removed[0]], rtol=0, atol=0)
    for y, xx in removed[0].nonzero().tolist():
        total, weights = torch.zeros(2, dtype=torch.float64), 0.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dy, dx) == (0, 0) or not (0 <= y + dy < 6 and 0 <= xx + dx < 5):
                    continue
                weight = 1 / 12 if dy and dx else 1 / 6
                total += weight * filled[:, y + dy, xx + dx]
                weights += weight
        torch.testing.assert_close(filled[:, y, xx], total / weights, rtol=1e-12, atol=1e-12)


def test_imputation_equals_pytorch_grad_cam_and_quantus() -> None:
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    removed = _maps(16)[:, 0] > 0.6
    ours = noisy_linear_imputation(x, removed, noise=0.0)
    peer = NoisyLinearImputer(noise=0.0)
    for i in range(2):
        theirs = peer(x[i], (~removed[i]).float())  # pgc: 0 = removed
        torch.testing.assert_close(ours[i], theirs, atol=1e-6, rtol=0)
        index = np.flatnonzero(removed[i].numpy().reshape(-1))
        quantus = quantus_imputation(x[i].double().numpy(), index, noise=0.0)
        np.testing.assert_allclose(ours[i].numpy(), quantus, atol=1e-6, rtol=0)
    # the noise: N(0, 0.01^2) on the imputed values only, from the generator given
    noisy = noisy_linear_imputation(x, removed, generator=torch.Generator().manual_seed(2))
    change = noisy - ours
    for i in range(2):
        assert float(change[i][:, ~removed[i]].abs().max()) == 0.0
    spread = torch.cat([change[i][:, removed[i]].flatten() for i in range(2)]).std()
    assert 0.008 < float(spread) < 0.012


@pytest.mark.parametrize(
    "order, peer_class", [("morf", ROADMostRelevantFirst), ("lerf", ROADLeastRelevantFirst)]
)
def test_threshold_selection_equals_pytorch_grad_cam(order: str, peer_class: type) -> None:
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    maps = _maps()
    for removed_percent in (10, 50, 90):
        ours = road(
            model, x, maps, target=TARGETS, order=order, percentages=(removed_percent,),
            selection="threshold", seed=7, score="logit", return_curves=True,
        )  # fmt: skip
        torch.manual_seed(7)  # pytorch-grad-cam draws its noise from the global generator
        theirs = peer_class(100 - removed_percent)(  # its percentile: the share kept
            x, maps[:, 0].numpy(), [ClassifierOutputTarget(t) for t in TARGETS], model
        )
        difference = (ours.curves[:, 0] - ours.original).numpy()
        np.testing.assert_allclose(difference, theirs, atol=1e-5, rtol=1e-5)


def test_rank_selection_removes_exact_counts_and_orders_agree() -> None:
    # a linear model on the image: the score of an imputed image is computable by hand
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 10 * 10, 3)).double().eval()
    x = torch.randn(1, 2, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    maps = torch.arange(100.0, dtype=torch.float64).view(1, 1, 10, 10)  # no ties
    result = road(
        model, x, maps, target=1, percentages=(30,), noise=0.0, score="logit", return_curves=True
    )
    removed = (maps[0, 0] >= 70).unsqueeze(0)  # the 30 highest pixels
    expected = model(noisy_linear_imputation(x, removed, noise=0.0))[0, 1]
    torch.testing.assert_close(result.curves[0, 0], expected.detach(), rtol=1e-12, atol=1e-12)
    lerf = road(model, x, maps, target=1, order="lerf", percentages=(30,), noise=0.0, score="logit")
    removed = (maps[0, 0] < 30).unsqueeze(0)
    expected = model(noisy_linear_imputation(x, removed, noise=0.0))[0, 1]
    torch.testing.assert_close(lerf[0], expected.detach(), rtol=1e-12, atol=1e-12)


def test_chunk_size_and_seed() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    ).eval()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    whole = road(model, x, maps, target=[0, 1, 2], return_curves=True)
    chunked = road(model, x, maps, target=[0, 1, 2], max_examples_per_batch=4, return_curves=True)
    torch.testing.assert_close(whole.curves, chunked.curves)
    assert whole.curves.shape == (3, 9) and whole.scores.shape == (3,)
    torch.testing.assert_close(whole.scores, whole.curves.mean(dim=1))
    other = road(model, x, maps, target=[0, 1, 2], seed=1)
    assert not torch.equal(other, whole.scores)


def test_bad_input_is_named() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    x = torch.randn(1, 3, 4, 4)
    maps = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="order must be"):
        road(model, x, maps, order="most")
    with pytest.raises(ValueError, match="percentages must lie strictly between 0 and 100"):
        road(model, x, maps, percentages=(0, 50))
    with pytest.raises(ValueError, match="selection must be"):
        road(model, x, maps, selection="value")
    with pytest.raises(ValueError, match="noise must be a number"):
        road(model, x, maps, noise=-1.0)
    with pytest.raises(ValueError, match="one map per example"):
        road(model, x, torch.rand(2, 1, 4, 4))
    # a constant map: the threshold takes every pixel at once, which is refused
    with pytest.raises(ValueError, match="removes every pixel of example 0"):
        road(model, x, torch.zeros(1, 1, 4, 4), selection="threshold")
    with pytest.raises(ValueError, match="every pixel of image 0 is removed"):
        noisy_linear_imputation(x, torch.ones(1, 4, 4, dtype=torch.bool))
