#!/usr/bin/env python3
"""XGrad-CAM: w_k = sum_ij g A / (sum_ij A + eps), map relu(sum_k w_k A_k), in float64."""

import pytest
import torch
from _gradient_captures import activations_and_gradients, gradient_net, images

from captum_cams import LayerXGradCam

TARGET = torch.tensor([1, 2, 4])


@pytest.mark.parametrize("eps", [1e-7, 0.5])
def test_closed_form_in_float64(eps: float) -> None:
    model, x = gradient_net(), images()
    activations, gradients = activations_and_gradients(model, x, TARGET)
    maps, weights = LayerXGradCam(model, model[1], eps=eps).attribute(
        x, target=TARGET, return_weights=True
    )
    sums = activations.sum(dim=(2, 3), keepdim=True)
    expected_weights = (gradients * activations / (sums + eps)).sum(dim=(2, 3))
    torch.testing.assert_close(weights, expected_weights, rtol=1e-12, atol=1e-15)
    expected = torch.relu((expected_weights[:, :, None, None] * activations).sum(1, keepdim=True))
    torch.testing.assert_close(maps, expected, rtol=1e-12, atol=1e-15)


def test_eps_changes_the_weights() -> None:
    model, x = gradient_net(), images()
    small = LayerXGradCam(model, model[1], eps=1e-7).attribute(
        x, target=TARGET, return_weights=True
    )
    large = LayerXGradCam(model, model[1], eps=10.0).attribute(
        x, target=TARGET, return_weights=True
    )
    assert not torch.allclose(small[1], large[1])
