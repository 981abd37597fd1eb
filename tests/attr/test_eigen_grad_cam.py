#!/usr/bin/env python3
"""Eigen-Grad-CAM: the same projection of g ⊙ A, against NumPy's SVD in float64."""

import torch
from _gradient_captures import activations_and_gradients, gradient_net, images
from _projection_reference import numpy_projection

from captum_cams import LayerEigenCam, LayerEigenGradCam

TARGET = torch.tensor([1, 3, 0])


def test_projection_of_gradient_times_activation_in_float64() -> None:
    model, x = gradient_net(), images()
    activations, gradients = activations_and_gradients(model, x, TARGET)
    expected = torch.relu(numpy_projection(gradients * activations))
    got = LayerEigenGradCam(model, model[1]).attribute(x, target=TARGET)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # the gradient weighs the projection: not Eigen-CAM's map
    eigen = LayerEigenCam(model, model[1]).attribute(x)
    assert (got - eigen).abs().max() > 1e-6
