#!/usr/bin/env python3
"""Relevance-CAM: relevance conserved through the head in float64 where the rules are
exact (sequential heads, and skip connections once split), the map on VGG-16 at
``features[-1]`` against a hand computation of the rules, the model untouched, and
heads without rules refused."""

from typing import Tuple

import pytest
import torch
import torch.nn as nn
import torchvision
from captum.attr import LayerLRP

from captum_cams import LayerRelevanceCam
from captum_cams.attr._lrp_head import UnsupportedRelevanceError


def _sequential() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(),   # the layer: net[3]
        nn.Conv2d(5, 4, 1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 7), nn.ReLU(), nn.Dropout(),
        nn.Linear(7, 4),
    )  # fmt: skip
    # the z+ rule is exact where every neuron that receives relevance has z+ > 0:
    # non-positive hidden biases guarantee it (a ReLU'd neuron then has a positive
    # contribution); the output layer's bias is the epsilon rule's to keep
    for module in net[:-1].modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.uniform_(module.bias, -0.1, 0.0)
    nn.init.uniform_(net[-1].bias, -0.1, 0.1)
    return net.double().eval()


#: Captum's stabiliser adds 1e-9 to every denominator z, so relevance is conserved to
#: a relative 1e-9 / |z| per layer, not to the last bit.
CONSERVED = {"rtol": 1e-6, "atol": 1e-12}


class _Residual(nn.Module):
    r"""A ResNet-style block after the layer: conv, batch-norm, ReLU, ``+`` the input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        out = self.relu(self.bn(self.conv(a)))
        out = self.relu(out + a)  # a skip connection; one ReLU called twice
        return self.fc(torch.flatten(self.pool(out), 1))


def _scores(model: nn.Module, x: torch.Tensor, target: list) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[torch.arange(len(target)), target]


def test_relevance_is_conserved_through_a_sequential_head_in_float64() -> None:
    net = _sequential()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = [0, 1, 3]
    maps, weights, delta = LayerRelevanceCam(net, net[3]).attribute(
        x, target, return_weights=True, return_convergence_delta=True
    )
    bias = net[-1].bias.detach()[target]
    # z+ conserves; the epsilon rule at the output leaves the bias its share
    torch.testing.assert_close(weights.sum(dim=1), _scores(net, x, target) - bias, **CONSERVED)
    torch.testing.assert_close(delta, bias, rtol=1e-5, atol=1e-10)
    a = net[:4](x).detach()
    torch.testing.assert_close(
        maps, (weights[:, :, None, None] * a).sum(1, keepdim=True).clamp_min(0)
    )


def test_relevance_is_conserved_through_a_skip_connection_where_captums_plain_lrp_creates_it() -> (
    None
):
    model = _Residual().double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = [0, 2]
    _, weights = LayerRelevanceCam(model, model.stem).attribute(x, target, return_weights=True)
    expected = _scores(model, x, target) - model.fc.bias.detach()[target]
    torch.testing.assert_close(weights.sum(dim=1), expected, **CONSERVED)
    # Captum's LRP on the model as it is hands the whole relevance of ``out + a`` to
    # both terms: relevance is created (about twice the logit here)
    plain = LayerLRP(model, model.stem[0]).attribute(x, target).sum(dim=(1, 2, 3))
    assert bool(((plain - expected).abs() > 0.1 * expected.abs()).all())


def _hand_relevance_cam(
    vgg: nn.Module, x: torch.Tensor, target: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""The rules by hand, for one example: epsilon at the output, z+ (bias left out)
    at the two hidden linear layers, epsilon at the 2 x 2 -> 7 x 7 average pool."""
    eps = 1e-9

    def stabilised(z: torch.Tensor) -> torch.Tensor:
        return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)

    with torch.no_grad():
        a = vgg.features(x)[0]  # 512 x 2 x 2
        k, h, w = a.shape
        # the adaptive average pool as a matrix: output cell o averages input rows
        # floor(o*h/7) ... ceil((o+1)*h/7) - 1
        pool = torch.zeros(7, h)
        for o in range(7):
            start, stop = (o * h) // 7, -((-(o + 1) * h) // 7)
            pool[o, start:stop] = 1.0 / (stop - start)
        pooled = pool @ a @ pool.T  # 512 x 7 x 7
        v0 = pooled.flatten()
        fc1, fc2, fc3 = vgg.classifier[0], vgg.classifier[3], vgg.classifier[6]
        h1 = torch.relu(fc1.weight @ v0 + fc1.bias)
        h2 = torch.relu(fc2.weight @ h1 + fc2.bias)
        y = fc3.weight @ h2 + fc3.bias
        r_h2 = h2 * fc3.weight[target] * (y[target] / stabilised(y[target]))
        w2 = fc2.weight.clamp(min=0)
        r_h1 = h1 * (w2.T @ (r_h2 / stabilised(w2 @ h1)))
        w1 = fc1.weight.clamp(min=0)
        r_v0 = v0 * (w1.T @ (r_h1 / stabilised(w1 @ v0)))
        ratio = r_v0.view(k, 7, 7) / stabilised(pooled)
        r_a = a * (pool.T @ ratio @ pool)
        weights = r_a.sum(dim=(1, 2))
        cam = torch.relu((weights[:, None, None] * a).sum(0))
    return weights, cam


def test_vgg16_map_at_the_last_feature_layer_by_hand() -> None:
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    target = 7
    maps, weights = LayerRelevanceCam(vgg, vgg.features[-1]).attribute(
        x, target, return_weights=True
    )
    expected_weights, expected_map = _hand_relevance_cam(vgg, x, target)
    scale = float(expected_weights.abs().max())
    torch.testing.assert_close(weights[0], expected_weights, rtol=1e-4, atol=1e-4 * scale)
    torch.testing.assert_close(
        maps[0, 0], expected_map, rtol=1e-4, atol=1e-4 * float(expected_map.max())
    )
    assert float(expected_map.max()) > 0


def test_the_model_is_left_as_it_was() -> None:
    net = _sequential()
    rule = object()
    net[8].rule = rule  # an attribute of the user's, which Captum's LRP would delete
    before = [(p, p.detach().clone(), p._version, p.data_ptr()) for p in net.parameters()]
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    cam = LayerRelevanceCam(net, net[3])
    first = cam.attribute(x, [0, 1])
    second = cam.attribute(x, [0, 1])
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    for parameter, values, version, pointer in before:
        assert torch.equal(parameter, values)
        assert parameter._version == version and parameter.data_ptr() == pointer
    assert net[8].rule is rule
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())
    # weights changed in place after the first call are seen by the next
    with torch.no_grad():
        net[-1].weight.mul_(2.0)
    _, doubled = cam.attribute(x, [0, 1], return_weights=True)
    with torch.no_grad():
        net[-1].weight.div_(2.0)
    _, plain = cam.attribute(x, [0, 1], return_weights=True)
    torch.testing.assert_close(doubled, 2 * plain)


class _FunctionalHead(nn.Module):
    r"""DenseNet's and ShuffleNet's head style: functional ReLU, pooling and mean."""

    def __init__(self, use_mean: bool) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.features = nn.Conv2d(3, 5, 3, padding=1)
        self.use_mean = use_mean
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.nn.functional.relu(self.features(x), inplace=True)
        if self.use_mean:
            pooled = a.mean([2, 3])
        else:
            pooled = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(a, (1, 1)), 1)
        return self.fc(pooled)


@pytest.mark.parametrize("use_mean", [False, True])
def test_functional_pooling_and_spatial_means_become_rule_sites(use_mean: bool) -> None:
    model = _FunctionalHead(use_mean).double().eval()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    _, weights = LayerRelevanceCam(model, model.features).attribute(x, [0, 2], return_weights=True)
    expected = _scores(model, x, [0, 2]) - model.fc.bias.detach()[[0, 2]]
    torch.testing.assert_close(weights.sum(dim=1), expected, **CONSERVED)


class _SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.body(x)
        scale = torch.sigmoid(self.gate(a.mean((2, 3))))[:, :, None, None]
        return self.fc((a * scale).mean((2, 3)))


def test_heads_without_rules_are_refused_naming_the_operation() -> None:
    model = _SqueezeExcite().eval()
    with pytest.raises(UnsupportedRelevanceError, match="sigmoid"):
        LayerRelevanceCam(model, model.body)
    norm = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LayerNorm(4 * 4 * 4), nn.Linear(64, 2)
    )
    with pytest.raises(UnsupportedRelevanceError, match="LayerNorm"):
        LayerRelevanceCam(norm.eval(), norm[0])
    with pytest.raises(ValueError, match="epsilon must be"):
        LayerRelevanceCam(norm.eval(), norm[0], epsilon=0.0)
