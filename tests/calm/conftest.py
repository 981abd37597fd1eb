#!/usr/bin/env python3
"""Tiny float64 CALM models whose every number can be recomputed by hand."""

from typing import Callable

import pytest
import torch
import torch.nn as nn

from captum_cams.calm import CALM


def _tiny(attention_activation: str = "softplus", seed: int = 0) -> CALM:
    generator = torch.Generator().manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    model = CALM(backbone, in_channels=4, num_classes=5, attention_activation=attention_activation)
    model = model.double()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float64) * 0.7)
    return model.eval()


@pytest.fixture
def tiny_calm() -> Callable[..., CALM]:
    return _tiny


@pytest.fixture
def tiny_inputs() -> torch.Tensor:
    return torch.rand(3, 3, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def direct_factors(model: CALM, inputs: torch.Tensor):
    r"""g (N x C x h x w) and p(z|x) (N x 1 x h x w) by explicit loops over locations."""
    feats = model.backbone(inputs)
    weight_g = model.classifier.weight[:, :, 0, 0]
    bias_g = model.classifier.bias
    weight_h = model.attention.weight[0, :, 0, 0]
    bias_h = model.attention.bias[0]
    n, _, h, w = feats.shape
    g = torch.zeros(n, model.num_classes, h, w, dtype=feats.dtype)
    att = torch.zeros(n, 1, h, w, dtype=feats.dtype)
    for i in range(n):
        for r in range(h):
            for c in range(w):
                f = feats[i, :, r, c]
                logits = weight_g @ f + bias_g
                e = torch.exp(logits - logits.max())
                g[i, :, r, c] = e / e.sum()
                a = weight_h @ f + bias_h
                if model.attention_activation == "softplus":
                    att[i, 0, r, c] = torch.log1p(torch.exp(a))
                else:
                    att[i, 0, r, c] = torch.clamp(a, min=0)
    total = att.flatten(1).sum(1).reshape(n, 1, 1, 1)
    return g, att / total


@pytest.fixture
def direct() -> Callable:
    return direct_factors
