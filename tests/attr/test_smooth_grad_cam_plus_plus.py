#!/usr/bin/env python3
"""Smooth Grad-CAM++: its weights equal torchcam's ``SmoothGradCAMpp`` with the same noise
draws where the maths coincide, and weights and map equal the paper's formula by plain
autograd in float64."""

from typing import List

import torch
import torch.nn as nn
import torchvision

from captum_cams import LayerSmoothGradCamPlusPlus

TARGETS = [3, 512]


class _PooledMLP(nn.Module):
    r"""A global average pool, then a non-linear head: ``dy/dA`` is the same at every
    position of a channel but depends on the input (so the noise matters)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _torchcam_smooth_weights(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: List[int], samples: int, seed: int
) -> torch.Tensor:
    from torchcam.methods import SmoothGradCAMpp

    with SmoothGradCAMpp(
        model, target_layer=layer, num_samples=samples, input_shape=x.shape[1:]
    ) as peer:
        scores = model(x)
        torch.manual_seed(seed)
        (weights,) = peer._get_weights(targets, scores)
    return weights


def test_smooth_grad_cam_plus_plus_weights_equal_torchcam_where_the_maths_coincide() -> None:
    # ResNet-18 layer4: dy/dA is constant over the positions and the input (a linear
    # head), so torchcam's two formula differences vanish, for any number of samples
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    _, ours = LayerSmoothGradCamPlusPlus(model, model.layer4).attribute(
        x, target=TARGETS, seed=5, return_weights=True
    )
    theirs = _torchcam_smooth_weights(model, model.layer4, x, TARGETS, 4, 5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7 * float(ours.abs().max()))
    # a non-linear head after the pool: the noise changes dy/dA; with one sample the
    # last sample's gradient is the mean, so the draws themselves are compared
    net = _PooledMLP().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    _, ours = LayerSmoothGradCamPlusPlus(net, net.body[3]).attribute(
        x, target=[1, 4], seed=7, num_samples=1, return_weights=True
    )
    theirs = _torchcam_smooth_weights(net, net.body[3], x, [1, 4], 1, 7)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-8)
    _, other_seed = LayerSmoothGradCamPlusPlus(net, net.body[3]).attribute(
        x, target=[1, 4], seed=8, num_samples=1, return_weights=True
    )
    assert not torch.allclose(other_seed, ours)


def test_smooth_grad_cam_plus_plus_by_hand_in_float64() -> None:
    # the paper's averages of g, g^2, g^3 over the noisy inputs, by plain autograd
    net = _PooledMLP().double().eval()
    body = nn.Sequential(net.body[0], net.body[1], nn.Conv2d(8, 6, 3, padding=1))
    body[2].load_state_dict(net.body[2].state_dict())
    body = body.double()
    head = nn.Sequential(nn.ReLU(), net.head)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = [1, 4]
    maps, weights = LayerSmoothGradCamPlusPlus(net, net.body[2]).attribute(
        x, target=target, seed=11, num_samples=3, stdevs=0.5, return_weights=True
    )
    generator = torch.Generator().manual_seed(11)
    grads = []
    for _ in range(3):
        noisy = x + 0.5 * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        a = body(noisy).detach().requires_grad_()
        head(a)[[0, 1], target].sum().backward()
        grads.append(a.grad)
    g = torch.stack(grads)
    g1, g2, g3 = g.mean(0), g.pow(2).mean(0), g.pow(3).mean(0)
    a_clean = body(x).detach()
    alpha = g2 / (2 * g2 + a_clean.sum(dim=(2, 3), keepdim=True) * g3 + 1e-8)
    alpha = torch.where(g2 != 0, alpha, torch.zeros_like(alpha))
    expected = (g1.clamp_min(0) * alpha).sum(dim=(2, 3))
    torch.testing.assert_close(weights, expected, rtol=1e-10, atol=1e-14)
    expected_map = (expected[:, :, None, None] * a_clean).sum(1, keepdim=True).clamp_min(0)
    torch.testing.assert_close(maps, expected_map, rtol=1e-10, atol=1e-14)
