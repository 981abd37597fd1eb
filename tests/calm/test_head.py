#!/usr/bin/env python3
"""The CALM head: p(y|x) against a loop-by-loop recomputation, the constructors from
real backbones, log space without NaN, errors."""

import math

import pytest
import torch
import torch.nn as nn
import torchvision

from captum_cams.calm import CALM, log_saliency_from_attention
from captum_cams.kit.models.cifar_resnet import resnet20


def test_forward_is_the_marginal_of_the_directly_computed_joint(tiny_calm, tiny_inputs, direct):
    model = tiny_calm()
    g, saliency = direct(model, tiny_inputs)
    expected = (g * saliency).flatten(2).sum(2)
    with torch.no_grad():
        probs = model(tiny_inputs)
        log_probs = model(tiny_inputs, log_probs=True)
        parts = model.components(tiny_inputs)
    assert probs.dtype == torch.float64 and probs.shape == (3, 5)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_probs, expected.log(), rtol=0, atol=1e-12)
    torch.testing.assert_close(probs.sum(1), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(parts.log_conditional.exp(), g, rtol=0, atol=1e-12)
    torch.testing.assert_close(parts.log_saliency.exp(), saliency, rtol=0, atol=1e-12)
    model.log_output = True
    with torch.no_grad():
        assert torch.equal(model(tiny_inputs), log_probs)
        assert torch.equal(model(tiny_inputs, log_probs=False), probs)


def test_relu_attention_matches_the_loops_and_is_uniform_when_all_zero(
    tiny_calm, tiny_inputs, direct
):
    model = tiny_calm("relu")
    with torch.no_grad():
        model.attention.bias.fill_(0.3)  # some locations positive, some zero
    g, saliency = direct(model, tiny_inputs)
    assert (saliency == 0).any() and (saliency > 0).any()
    with torch.no_grad():
        torch.testing.assert_close(
            model(tiny_inputs), (g * saliency).flatten(2).sum(2), rtol=0, atol=1e-12
        )
        model.attention.weight.zero_()
        model.attention.bias.fill_(-1.0)  # h = 0 everywhere
        parts = model.components(tiny_inputs)
        probs = model(tiny_inputs)
    assert not torch.isnan(parts.log_saliency).any() and not torch.isnan(probs).any()
    uniform = torch.full_like(parts.log_saliency, 1 / 20)
    torch.testing.assert_close(parts.log_saliency.exp(), uniform, rtol=0, atol=1e-15)
    torch.testing.assert_close(probs, g.mean(dim=(2, 3)), rtol=0, atol=1e-12)


def test_softplus_log_space_survives_underflow():
    # h_z = softplus(a_z) ~ exp(a_z) underflows for a = -1000 even in float64;
    # p(z|x) = e^a_z / sum e^a is still [1, e^-1] / (1 + e^-1)
    pre = torch.tensor([[[[-1000.0, -1001.0]]]], dtype=torch.float64)
    assert torch.nn.functional.softplus(pre).eq(0).all()  # the naive way divides 0 by 0
    log_p = log_saliency_from_attention(pre, "softplus")
    expected = torch.tensor([1.0, math.exp(-1.0)], dtype=torch.float64) / (1 + math.exp(-1.0))
    torch.testing.assert_close(log_p.exp().flatten(), expected, rtol=1e-12, atol=0)
    pre.requires_grad_(True)
    log_saliency_from_attention(pre, "softplus")[0, 0, 0, 0].backward()
    assert torch.isfinite(pre.grad).all()
    with pytest.raises(ValueError, match="attention_activation"):
        log_saliency_from_attention(pre, "sigmoid")


def test_from_cifar_resnet_uses_layer3_and_copies_the_classifier():
    source = resnet20().eval()
    for module in source.modules():  # non-trivial batch-norm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    model = CALM.from_cifar_resnet(source, copy_classifier=True)
    assert not model.training and model.classifier.out_channels == 10
    x = torch.randn(2, 3, 32, 32)
    captured = {}
    handle = source.layer3.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    with torch.no_grad():
        source(x)
        handle.remove()
        feats = model.features(x)
        assert feats.shape == (2, 64, 8, 8)
        torch.testing.assert_close(feats, captured["a"], rtol=0, atol=0)
        # attention starts uniform, g = the original linear layer at every location
        per_location = source.linear(feats.permute(0, 2, 3, 1)).softmax(-1)
        torch.testing.assert_close(model(x), per_location.mean(dim=(1, 2)), rtol=1e-6, atol=1e-7)
    # a training step on the CALM model leaves the source untouched (deep copy)
    model.train()
    model(x)[:, 0].sum().backward()
    assert all(torch.equal(before[k], v) for k, v in source.state_dict().items())
    assert all(p.grad is None for p in source.parameters())
    # by default the heads start from scratch, as the paper trains them
    scratch = CALM.from_cifar_resnet(source)
    assert not torch.equal(scratch.classifier.weight[:, :, 0, 0], source.linear.weight)
    assert torch.equal(
        CALM.from_cifar_resnet(source, copy_classifier=None).classifier.weight[:, :, 0, 0],
        source.linear.weight,
    )
    assert CALM.from_cifar_resnet(source, num_classes=3).classifier.out_channels == 3
    with pytest.raises(ValueError, match="copy_classifier"):
        CALM.from_cifar_resnet(source, num_classes=3, copy_classifier=True)
    with pytest.raises(TypeError, match="CIFAR ResNet"):
        CALM.from_cifar_resnet(nn.Linear(2, 2))


def test_from_torchvision_uses_layer4():
    resnet = torchvision.models.resnet18(weights=None).eval()
    model = CALM.from_torchvision(resnet, num_classes=7)
    assert model.in_channels == 512 and model.classifier.out_channels == 7
    x = torch.randn(1, 3, 64, 64)
    captured = {}
    handle = resnet.layer4.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    with torch.no_grad():
        resnet(x)
        handle.remove()
        torch.testing.assert_close(model.features(x), captured["a"], rtol=0, atol=0)
        assert model(x).shape == (1, 7)
    copied = CALM.from_torchvision(resnet, num_classes=1000, copy_classifier=True)
    assert torch.equal(copied.classifier.weight[:, :, 0, 0], resnet.fc.weight)
    assert torch.equal(copied.classifier.bias, resnet.fc.bias)
    with pytest.raises(TypeError, match="torchvision ResNet"):
        CALM.from_torchvision(nn.Conv2d(3, 3, 1), 3)


def test_constructor_and_backbone_errors():
    conv = nn.Conv2d(3, 4, 1)
    with pytest.raises(TypeError, match="backbone"):
        CALM("conv", 4, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_channels"):
        CALM(conv, 0, 3)
    with pytest.raises(ValueError, match="num_classes"):
        CALM(conv, 4, 1)
    with pytest.raises(ValueError, match="attention_activation"):
        CALM(conv, 4, 3, attention_activation="exp")
    with pytest.raises(ValueError, match="in_channels is 5"):
        CALM(conv, 5, 3)(torch.rand(1, 3, 4, 4))
    flat = CALM(nn.Sequential(conv, nn.Flatten()), 4, 3)
    with pytest.raises(ValueError, match="fully convolutional"):
        flat(torch.rand(1, 3, 4, 4))
