#!/usr/bin/env python3
"""Grad-CAM: Captum's LayerGradCam to the last float64 bit, and the closed form."""

import torch
from _gradient_captures import activations_and_gradients, gradient_net, images
from captum.attr import LayerGradCam as CaptumLayerGradCam

from captum_cams import LayerGradCam

TARGET = torch.tensor([0, 3, 4])


def test_equals_captums_layer_grad_cam_in_float64() -> None:
    model, x = gradient_net(), images()
    ours, theirs = LayerGradCam(model, model[1]), CaptumLayerGradCam(model, model[1])
    for relu in (False, True):
        expected = theirs.attribute(x, target=TARGET, relu_attributions=relu)
        got = ours.attribute(x, target=TARGET, relu_attributions=relu)
        assert got.dtype == torch.float64 and got.shape == (3, 1, 6, 6)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
    per_channel = ours.attribute(x, target=TARGET, attr_dim_summation=False)
    expected = theirs.attribute(x, target=TARGET, attr_dim_summation=False)
    torch.testing.assert_close(per_channel, expected, rtol=0, atol=1e-15)


def test_weights_are_the_spatial_mean_of_the_gradient() -> None:
    model, x = gradient_net(), images()
    activations, gradients = activations_and_gradients(model, x, TARGET)
    maps, weights = LayerGradCam(model, model[1]).attribute(
        x, target=TARGET, relu_attributions=True, return_weights=True
    )
    expected_weights = gradients.mean(dim=(2, 3))
    torch.testing.assert_close(weights, expected_weights, rtol=1e-12, atol=1e-15)
    expected = torch.relu((expected_weights[:, :, None, None] * activations).sum(1, keepdim=True))
    torch.testing.assert_close(maps, expected, rtol=1e-12, atol=1e-15)
    assert bool((maps > 0).any()) and bool((maps == 0).any())  # the ReLU did something
