#!/usr/bin/env python3
"""A small float64 network whose gradient at the explained layer varies over positions, and
its activations and gradients taken with plain autograd: the inputs of the gradient
methods' closed forms, computed without the package."""

from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

CHANNELS = 4


def gradient_net() -> nn.Sequential:
    r"""stem (3 → K) → ReLU (the explained layer) → a non-linear head, so that ``g`` differs
    from position to position and channel to channel."""
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, CHANNELS, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(CHANNELS, 6, 1),
            nn.Softplus(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 5),
        )
        .double()
        .eval()
    )


def images(num: int = 3, size: int = 6) -> Tensor:
    return torch.randn(
        num, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )


def activations_and_gradients(model: nn.Module, x: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
    r"""``A`` (the output of ``model[1]``) and ``g = dy_c / dA`` per example."""
    captured = {}
    handle = model[1].register_forward_hook(lambda _m, _i, out: captured.setdefault("A", out))
    try:
        outputs = model(x)
    finally:
        handle.remove()
    activations = captured["A"]
    chosen = outputs.gather(1, target[:, None]).sum()
    (gradients,) = torch.autograd.grad(chosen, activations)
    return activations.detach(), gradients.detach()
