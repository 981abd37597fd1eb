#!/usr/bin/env python3
"""capture_layer: one forward through Captum's _forward_layer_eval gives the layer's
output (or input) and the model's output, equal in float64 to computing them by hand,
with the extra arguments passed through, the graph kept only when gradients are on,
no hook left and an uncalled layer named."""

import pytest
import torch
from torch import Tensor, nn

from captum_cams._utils.capture import LayerNotCalledError, capture_layer, single_feature_map


class TwoInputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.layer = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Softplus())
        self.fc = nn.Linear(4, 5)
        self.unused = nn.Conv2d(4, 4, 1)

    def forward(self, x: Tensor, shift: Tensor, scale: float) -> Tensor:
        hidden = self.conv(x) + shift
        return self.fc(self.layer(hidden).mean((2, 3))) * scale


def net() -> TwoInputNet:
    torch.manual_seed(0)
    return TwoInputNet().double().eval()


def test_output_input_and_model_output_equal_the_direct_computation() -> None:
    model = net()
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    shift = torch.randn(1, 3, 1, 1, dtype=torch.float64)
    with torch.no_grad():
        hidden = model.conv(x) + shift
        activations = model.layer(hidden)
        logits = model.fc(activations.mean((2, 3))) * 2.0
        (out,), output = capture_layer(model, x, model.layer, (shift, 2.0))
        (into,), _ = capture_layer(model, x, model.layer, (shift, 2.0), None, True)
    assert torch.equal(out, activations) and torch.equal(output, logits)
    assert torch.equal(into, hidden)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_the_graph_follows_the_callers_gradient_mode() -> None:
    model = net()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    args = (torch.zeros(1, dtype=torch.float64), 1.0)
    with torch.no_grad():
        (quiet,), _ = capture_layer(model, x, model.layer, args)
    (recorded,), output = capture_layer(model, x, model.layer, args)
    assert not quiet.requires_grad and recorded.requires_grad and output.requires_grad
    # a loss on the captured tensor reaches the layer's weights, as on the layer's output
    (grad,) = torch.autograd.grad(recorded.sum(), model.layer[0].weight)
    (expected,) = torch.autograd.grad(model.layer(model.conv(x)).sum(), model.layer[0].weight)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
    (forced,), _ = capture_layer(model, x, model.layer, args, grad_enabled=False)
    assert not forced.requires_grad


def test_an_uncalled_layer_and_a_non_map_are_named() -> None:
    model = net()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    args = (torch.zeros(1, dtype=torch.float64), 1.0)
    with pytest.raises(LayerNotCalledError, match="not called"):
        capture_layer(model, x, model.unused, args)
    assert not model.unused._forward_hooks
    assert issubclass(LayerNotCalledError, ValueError)
    (out,), _ = capture_layer(model, x, model.fc, args)
    with pytest.raises(ValueError, match=r"one N x K x h x w tensor; got \(1, 5\)"):
        single_feature_map((out,))
    maps = torch.zeros(1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"got \(1, 4, 3, 3\), \(1, 4, 3, 3\)"):
        single_feature_map((maps, maps))
    assert single_feature_map((maps,)) is maps
