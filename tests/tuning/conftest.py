#!/usr/bin/env python3
"""A small float64 CNN shared by the TFT, calibration and filtering tests."""

from typing import Callable

import pytest
import torch
from torch import nn


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 5),
        )
        .double()
        .eval()
    )


@pytest.fixture
def small_cnn() -> Callable[[], nn.Module]:
    """Makes a fresh copy of the model (same seed, same weights) per call."""
    return _small_cnn
