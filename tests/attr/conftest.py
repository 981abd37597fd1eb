#!/usr/bin/env python3
"""A model shared by the head methods' tests (Ablation-CAM, SHAP-CAM)."""

import pytest
import torch
import torch.nn as nn
from torch import Tensor

SKIP_CHANNELS = 6


class SkipAroundLayer(nn.Module):
    r"""A skip connection around ``layer``: no fx split, so ``LayerHead`` falls back to
    whole-model passes, which need each row's example (the skip term differs)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, SKIP_CHANNELS, 3, padding=1)
        self.layer = nn.Conv2d(SKIP_CHANNELS, SKIP_CHANNELS, 1)
        self.fc = nn.Linear(SKIP_CHANNELS, 10)

    def forward(self, x: Tensor) -> Tensor:
        s = self.stem(x)
        out = torch.relu(self.layer(s) + s)
        return self.fc(out.mean(dim=(2, 3)))


@pytest.fixture
def skip_model() -> SkipAroundLayer:
    torch.manual_seed(0)
    return SkipAroundLayer().double().eval()
