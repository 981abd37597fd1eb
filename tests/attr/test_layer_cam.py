#!/usr/bin/env python3
"""Layer-CAM: positional weights relu(g), map relu(sum_k relu(g_k) A_k), in float64."""

import torch
from _gradient_captures import CHANNELS, activations_and_gradients, gradient_net, images

from captum_cams import LayerCam

TARGET = torch.tensor([2, 0, 1])


def test_closed_form_and_positional_weights() -> None:
    model, x = gradient_net(), images()
    activations, gradients = activations_and_gradients(model, x, TARGET)
    maps, weights = LayerCam(model, model[1]).attribute(x, target=TARGET, return_weights=True)
    assert weights.shape == (3, CHANNELS, 6, 6)
    torch.testing.assert_close(weights, torch.relu(gradients), rtol=0, atol=0)
    expected = torch.relu((torch.relu(gradients) * activations).sum(1, keepdim=True))
    torch.testing.assert_close(maps, expected, rtol=1e-12, atol=1e-15)
    assert bool((gradients < 0).any())  # the ReLU of g was needed on this network


def test_without_relu_the_map_keeps_its_sign() -> None:
    model, x = gradient_net(), images()
    activations, gradients = activations_and_gradients(model, x, TARGET)
    maps = LayerCam(model, model[1]).attribute(x, target=TARGET, relu_attributions=False)
    torch.testing.assert_close(
        maps, (torch.relu(gradients) * activations).sum(1, keepdim=True), rtol=1e-12, atol=1e-15
    )
