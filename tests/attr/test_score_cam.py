#!/usr/bin/env python3
"""Score-CAM: constant channels share one evaluation, and the weights stay exact."""

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from captum_cams import LayerScoreCam


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.weight[1].zero_()  # channel 1: relu(bias), constant
        conv.weight[3].zero_()
        conv.bias[3] = -1.0  # channel 3: relu(-1) = 0, constant
    return (
        nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(20, 4))
        .double()
        .eval()
    )


def test_constant_channels_are_evaluated_once_and_weights_are_exact() -> None:
    model = _model()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = [0, 2, 3]
    rows: List[int] = []
    handle = model.register_forward_hook(lambda _m, inp, _o: rows.append(inp[0].shape[0]))
    try:
        _, weights = LayerScoreCam(model, model[1]).attribute(
            x, target=target, return_weights=True, internal_batch_size=None
        )
    finally:
        handle.remove()
    # the capture (3 rows), then 3 non-constant channels + 1 zero mask per example
    assert rows == [3, 3 * 4]
    with torch.no_grad():
        activations = model[1](model[0](x))
        expected = torch.empty(3, 5, dtype=torch.float64)
        for n in range(3):
            for k in range(5):
                channel = activations[n, k]
                span = (channel.max() - channel.min()).clamp_min(1e-7)
                mask = F.interpolate(
                    ((channel - channel.min()) / span)[None, None],
                    size=(6, 6), mode="bilinear", align_corners=False,
                )  # fmt: skip
                expected[n, k] = model(x[n : n + 1] * mask)[0, target[n]]
    assert torch.equal(expected[:, 1], expected[:, 3])  # both constant: the same image
    torch.testing.assert_close(weights, expected.softmax(dim=1), rtol=1e-12, atol=1e-12)
