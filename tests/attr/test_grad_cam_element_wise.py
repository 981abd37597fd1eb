#!/usr/bin/env python3
"""Element-wise Grad-CAM: sum_k relu(g_k A_k), the ReLU inside the channel sum, in float64."""

import torch
from _gradient_captures import activations_and_gradients, gradient_net, images

from captum_cams import LayerGradCamElementWise

TARGET = torch.tensor([3, 1, 2])


def test_closed_form_in_float64() -> None:
    model, x = gradient_net(), images()
    activations, gradients = activations_and_gradients(model, x, TARGET)
    maps = LayerGradCamElementWise(model, model[1]).attribute(x, target=TARGET)
    expected = torch.relu(gradients * activations).sum(1, keepdim=True)
    torch.testing.assert_close(maps, expected, rtol=1e-12, atol=1e-15)
    # the ReLU inside the sum is not the ReLU of the sum on this network
    outside = torch.relu((gradients * activations).sum(1, keepdim=True))
    assert (expected - outside).abs().max() > 1e-6
