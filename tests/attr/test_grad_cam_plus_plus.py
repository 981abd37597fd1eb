#!/usr/bin/env python3
"""Grad-CAM++: a = g^2 / (2 g^2 + sum A g^3 + eps) (0 where g = 0), w_k = sum relu(g) a,
map relu(sum_k w_k A_k), in float64."""

import torch
from _gradient_captures import activations_and_gradients, gradient_net, images

from captum_cams import LayerGradCamPlusPlus

TARGET = torch.tensor([0, 1, 2])


def test_closed_form_in_float64() -> None:
    model, x = gradient_net(), images()
    activations, gradients = activations_and_gradients(model, x, TARGET)
    maps, weights = LayerGradCamPlusPlus(model, model[1]).attribute(
        x, target=TARGET, return_weights=True
    )
    sums = activations.sum(dim=(2, 3), keepdim=True)
    expected_weights = torch.zeros_like(weights)
    for n in range(x.shape[0]):
        for k in range(activations.shape[1]):
            for g in gradients[n, k].flatten().tolist():
                if g == 0:
                    continue
                alpha = g**2 / (2 * g**2 + float(sums[n, k]) * g**3 + 1e-6)
                expected_weights[n, k] += max(g, 0.0) * alpha
    torch.testing.assert_close(weights, expected_weights, rtol=1e-12, atol=1e-15)
    expected = torch.relu((expected_weights[:, :, None, None] * activations).sum(1, keepdim=True))
    torch.testing.assert_close(maps, expected, rtol=1e-12, atol=1e-15)
