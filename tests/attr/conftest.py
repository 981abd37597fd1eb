#!/usr/bin/env python3
"""Models shared by the attribution tests: the head methods' (Ablation-CAM, SHAP-CAM)
and the torchcam-equivalence tests' (IS-CAM, SS-CAM)."""

from typing import Tuple

import pytest
import torch
import torch.nn as nn
import torchvision
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


@pytest.fixture
def small_resnet() -> Tuple[nn.Module, nn.Module, Tensor]:
    r"""A torchvision ResNet-18 (random weights from a fixed seed, eval), its ``layer1``
    and two 32 x 32 images: the setting the torchcam-equivalence tests share."""
    # layer1 (64 channels, 8 x 8 at 32 x 32) keeps the peers' K·N forwards cheap;
    # 32·32 is a multiple of 16, so torch draws the noise chunk by chunk as in one piece
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return model, model.layer1, x
