#!/usr/bin/env python3
"""Eigen-CAM: the sign-corrected first-principal-component projection of the activations,
against NumPy's SVD in float64; no gradient, so the target does not matter."""

import torch
from _gradient_captures import activations_and_gradients, gradient_net, images
from _projection_reference import numpy_projection

from captum_cams import LayerEigenCam


def test_projection_of_the_activations_in_float64() -> None:
    model, x = gradient_net(), images()
    activations, _ = activations_and_gradients(model, x, torch.zeros(3, dtype=torch.long))
    cam = LayerEigenCam(model, model[1])
    expected = numpy_projection(activations)
    torch.testing.assert_close(
        cam.attribute(x, relu_attributions=False), expected, rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(cam.attribute(x), torch.relu(expected), rtol=1e-10, atol=1e-12)
    # the sign rule: the strongest response is positive
    assert bool((expected.amax(dim=(1, 2, 3)) >= expected.amin(dim=(1, 2, 3)).abs()).all())


def test_the_target_does_not_change_the_map() -> None:
    model, x = gradient_net(), images()
    cam = LayerEigenCam(model, model[1])
    torch.testing.assert_close(cam.attribute(x, target=0), cam.attribute(x, target=4))
