#!/usr/bin/env python3
"""DeepLIFT's rules: the fixed-scale LayerNorm is F.layer_norm in value and an affine map in
gradient, and RescaleDeepLift gives an element-wise activation Captum does not list its
exact Rescale multiplier, so contributions sum to the change of the output."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

from captum_cams.attr._deeplift_rules import (
    RESCALE_RULES,
    FixedScaleLayerNorm,
    RescaleDeepLift,
    fixed_scale_layer_norm,
)

F64 = torch.float64


def test_fixed_scale_layer_norm_value_and_gradient() -> None:
    x = torch.randn(3, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(5, dtype=F64, generator=torch.Generator().manual_seed(1))
    bias = torch.randn(5, dtype=F64, generator=torch.Generator().manual_seed(2))
    x.requires_grad_(True)
    y = fixed_scale_layer_norm(x, (5,), weight, bias, eps=1e-5)
    torch.testing.assert_close(y, F.layer_norm(x, (5,), weight, bias, 1e-5))
    # the gradient is that of (x - mean x) * s * weight with s held fixed
    upstream = torch.randn(3, 5, dtype=F64, generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(y, x, upstream)
    scale = (x.detach().var(dim=1, unbiased=False, keepdim=True) + 1e-5).rsqrt()
    weighted = upstream * weight * scale
    expected = weighted - weighted.mean(dim=1, keepdim=True)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)
    norm = nn.LayerNorm(5).double()
    torch.testing.assert_close(FixedScaleLayerNorm(norm)(x), norm(x))


def test_the_rule_table_extends_captums_without_softmax() -> None:
    assert nn.Softmax not in RESCALE_RULES
    assert all(kind in RESCALE_RULES for kind in SUPPORTED_NON_LINEAR if kind is not nn.Softmax)
    assert nn.SiLU in RESCALE_RULES and nn.SiLU not in SUPPORTED_NON_LINEAR


def test_an_activation_captum_does_not_list_gets_the_exact_rescale_multiplier() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.SiLU(), nn.Linear(3, 2)).double().eval()
    x = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(5))
    baseline = torch.zeros_like(x)
    contributions = RescaleDeepLift(model).attribute(x, baselines=baseline, target=1)
    change = model(x)[:, 1] - model(baseline)[:, 1]
    # completeness holds only with the Rescale rule at the SiLU (not its gradient)
    torch.testing.assert_close(contributions.sum(dim=1), change.detach(), rtol=1e-10, atol=1e-12)
