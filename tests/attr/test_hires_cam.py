#!/usr/bin/env python3
"""HiResCAM: relu(sum_k g_k A_k), the gradient not averaged over positions, in float64."""

import torch
from _gradient_captures import activations_and_gradients, gradient_net, images

from captum_cams import LayerGradCam, LayerHiResCam

TARGET = torch.tensor([4, 4, 0])


def test_closed_form_in_float64() -> None:
    model, x = gradient_net(), images()
    activations, gradients = activations_and_gradients(model, x, TARGET)
    maps = LayerHiResCam(model, model[1]).attribute(x, target=TARGET)
    expected = torch.relu((gradients * activations).sum(1, keepdim=True))
    torch.testing.assert_close(maps, expected, rtol=1e-12, atol=1e-15)


def test_differs_from_grad_cam_where_the_gradient_varies_over_positions() -> None:
    model, x = gradient_net(), images()
    hires = LayerHiResCam(model, model[1]).attribute(x, target=TARGET)
    grad_cam = LayerGradCam(model, model[1]).attribute(x, target=TARGET, relu_attributions=True)
    assert (hires - grad_cam).abs().max() > 1e-6
