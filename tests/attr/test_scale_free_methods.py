#!/usr/bin/env python3
"""The methods that min-max scale a map do not depend on its units: Score-CAM's masks
(a layer output times 1e-12, undone after the layer) and Libra-CAM's base maps (a
model whose logits are times 1e-12, score="logit") give the same maps."""

import pytest
import torch
import torch.nn as nn
from torch import Tensor

from captum_cams import LayerLibraCam, LayerScoreCam, ReferenceLibrary


class Times(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


def _scaled_layer_model(scale: float) -> nn.Sequential:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, stride=2),
            nn.ReLU(),
            Times(scale),  # the layer: the same activations in other units
            Times(1 / scale),
            nn.Conv2d(6, 4, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 5),
        )
        .double()
        .eval()
    )


X = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
TARGET = [0, 3, 1]


@pytest.mark.parametrize("scale", [1e-12, 1e12])
def test_score_cam_masks_do_not_depend_on_the_activations_units(scale: float) -> None:
    reference = _scaled_layer_model(1.0)
    scaled = _scaled_layer_model(scale)
    maps, weights = LayerScoreCam(reference, reference[2]).attribute(
        X, target=TARGET, return_weights=True
    )
    scaled_maps, scaled_weights = LayerScoreCam(scaled, scaled[2]).attribute(
        X, target=TARGET, return_weights=True
    )
    assert float(weights.std()) > 0  # not the uniform weights of all-blank masks
    torch.testing.assert_close(scaled_weights, weights, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(scaled_maps / scale, maps, rtol=1e-9, atol=1e-12)


class ScaledLogits(nn.Module):
    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model = model
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) * self.factor


@pytest.mark.parametrize("normalize", [False, True])
def test_libra_cam_does_not_depend_on_the_scores_units(normalize: bool) -> None:
    net = _scaled_layer_model(1.0)
    layer = net[1]
    with torch.no_grad():
        references = layer(net[0](X.flip(-1)))
    library = ReferenceLibrary(references, [torch.arange(3)] * 5, tau=0.5, max_per_class=3)
    options = dict(target=TARGET, score="logit", normalize_calibration=normalize)
    maps, details = LayerLibraCam(net, layer, library=library).attribute(
        X, return_details=True, **options
    )
    tiny = ScaledLogits(net, 1e-12)  # gradients and scores of 1e-12 of the size
    tiny_maps, tiny_details = LayerLibraCam(tiny, layer, library=library).attribute(
        X, return_details=True, **options
    )
    assert bool((maps.flatten(1).amax(dim=1) > 0).all())
    torch.testing.assert_close(tiny_details.base_maps, details.base_maps, rtol=1e-9, atol=1e-12)
    assert torch.equal(tiny_details.kept, details.kept)
    assert torch.equal(tiny_details.thresholds, details.thresholds)
    torch.testing.assert_close(tiny_maps, maps, rtol=1e-9, atol=1e-12)
