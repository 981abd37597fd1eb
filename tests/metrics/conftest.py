#!/usr/bin/env python3
"""Tiny float64 models whose outputs can be worked out by hand."""

from typing import Callable, Optional

import pytest
import torch
from torch import Tensor, nn


class PixelLinear(nn.Module):
    r"""Two classes: logit 0 = ``Σ w ⊙ x`` (a fixed weighted pixel sum), logit 1 = ``c``."""

    def __init__(self, weight: Tensor, other: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.to(torch.float64), requires_grad=False)
        self.other = other

    def forward(self, x: Tensor, scale: Optional[Tensor] = None) -> Tensor:
        z0 = (x * self.weight).flatten(1).sum(1)
        if scale is not None:
            z0 = z0 * scale
        return torch.stack([z0, torch.full_like(z0, self.other)], dim=1)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 5),
        )
        .double()
        .eval()
    )


@pytest.fixture
def linear_model() -> PixelLinear:
    # contributions w ⊙ x with x = [[1, 2], [3, 4]]: [[0.1, 0.4], [0.9, 1.6]], total 3.0
    return PixelLinear(torch.tensor([[[0.1, 0.2], [0.3, 0.4]]], dtype=torch.float64))


@pytest.fixture
def x22() -> Tensor:
    return torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)


@pytest.fixture
def map22() -> Tensor:
    # mm gives v / (4 + 1e-7): [[0, c/4], [c/2, c]] with c = 4 / (4 + 1e-7)
    return torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]], dtype=torch.float64)


@pytest.fixture
def cnn() -> nn.Module:
    return small_cnn()


@pytest.fixture
def make_batch() -> Callable[..., tuple]:
    def make(n: int = 3, size: int = 8, map_size: int = 4, seed: int = 1) -> tuple:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64)
        maps = torch.rand(n, 1, map_size, map_size, generator=gen, dtype=torch.float64)
        return x, maps

    return make


@pytest.fixture
def pixel_linear() -> type:
    return PixelLinear
