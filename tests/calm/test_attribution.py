#!/usr/bin/env python3
"""CALMAttribution: every attribution type against a loop-by-loop recomputation, the
axioms of METHODS.md (completeness, implementation invariance, no NaN), Captum style,
model state and errors."""

import pytest
import torch
import torch.nn as nn
from captum.attr import LayerAttribution

from captum_cams.calm import ATTRIBUTION_TYPES, CALM, CALMAttribution
from captum_cams.kit.models.embedded import load_embedded_default


def test_every_type_matches_the_loops(tiny_calm, tiny_inputs, direct):
    model = tiny_calm()
    g, saliency = direct(model, tiny_inputs)
    joint = g * saliency
    rows = torch.arange(3)
    target, other = torch.tensor([1, 4, 0]), [2, 2, 3]
    attr = CALMAttribution(model)
    expected = {
        "joint": joint[rows, target],
        "conditional": g[rows, target],
        "saliency": saliency[:, 0],
        "subset": joint[:, [0, 2, 3]].sum(1),
        "counterfactual": joint[rows, target] - joint[rows, other],
    }
    for kind, want in expected.items():
        got = attr.attribute(
            tiny_inputs,
            target=target,
            attribution_type=kind,
            subset_targets=[0, 2, 3],
            counterfactual_target=other,
        )
        assert got.shape == (3, 1, 4, 5) and got.dtype == torch.float64, kind
        torch.testing.assert_close(got[:, 0], want, rtol=0, atol=1e-12, msg=kind)
    per_example = attr.attribute(
        tiny_inputs, attribution_type="subset", subset_targets=[[0], [1, 2], [4]]
    )
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 0] = mask[1, 1] = mask[1, 2] = mask[2, 4] = True
    by_mask = attr.attribute(tiny_inputs, attribution_type="subset", subset_targets=mask)
    torch.testing.assert_close(
        per_example[:, 0],
        torch.stack([joint[0, 0], joint[1, 1] + joint[1, 2], joint[2, 4]]),
        rtol=0,
        atol=1e-12,
    )
    assert torch.equal(per_example, by_mask)


def test_completeness_on_the_trained_embedded_backbone():
    # float32, a real backbone: sum over locations of the joint map = p(y|x) to 1e-6
    net = load_embedded_default()
    model = CALM(net.features, 64, 10).eval()
    with torch.no_grad():
        model.attention.weight.normal_(0, 0.3)
    from captum_cams.kit.datasets import make_batch

    images = make_batch(6).images
    attr = CALMAttribution(model)
    probs = model(images)
    for target in range(10):
        maps = attr.attribute(images, target=target)
        torch.testing.assert_close(maps.flatten(1).sum(1), probs[:, target], rtol=0, atol=1e-6)
    # the predicted class by default; all classes together give the saliency
    predicted = attr.attribute(images)
    best = attr.attribute(images, target=probs.argmax(1))
    assert torch.equal(predicted, best)
    every = attr.attribute(images, attribution_type="subset", subset_targets=list(range(10)))
    saliency = attr.attribute(images, attribution_type="saliency")
    torch.testing.assert_close(every, saliency, rtol=0, atol=1e-6)
    torch.testing.assert_close(saliency.flatten(1).sum(1), torch.ones(6), rtol=0, atol=1e-6)


def test_implementation_invariance(tiny_calm, tiny_inputs):
    model = tiny_calm()
    attr = CALMAttribution(model)
    kwargs = dict(target=[0, 1, 2], subset_targets=[1, 3], counterfactual_target=4)
    before = {
        k: attr.attribute(tiny_inputs, attribution_type=k, **kwargs) for k in ATTRIBUTION_TYPES
    }
    # 1. a constant added to every class logit of g (its bias) changes nothing
    with torch.no_grad():
        model.classifier.bias += 11.0
    shifted = {
        k: attr.attribute(tiny_inputs, attribution_type=k, **kwargs) for k in ATTRIBUTION_TYPES
    }
    # 2. a functionally equal network (weights scaled into a following layer) gives the same maps
    twin = tiny_calm()
    with torch.no_grad():
        twin.backbone[0].weight *= 2.0
        twin.backbone[0].bias *= 2.0
        twin.classifier.weight /= 2.0
        twin.attention.weight /= 2.0
    twin_maps = {
        k: CALMAttribution(twin).attribute(tiny_inputs, attribution_type=k, **kwargs)
        for k in ATTRIBUTION_TYPES
    }
    for k in ATTRIBUTION_TYPES:
        torch.testing.assert_close(shifted[k], before[k], rtol=0, atol=1e-12, msg=k)
        torch.testing.assert_close(twin_maps[k], before[k], rtol=0, atol=1e-12, msg=k)


def test_no_nan_when_h_is_all_zeros(tiny_calm, tiny_inputs, direct):
    model = tiny_calm("relu")
    with torch.no_grad():
        model.attention.weight.zero_()
        model.attention.bias.fill_(-2.0)
    g, _ = direct(model, tiny_inputs)
    attr = CALMAttribution(model)
    for kind in ATTRIBUTION_TYPES:
        maps = attr.attribute(
            tiny_inputs,
            target=1,
            attribution_type=kind,
            subset_targets=[0],
            counterfactual_target=2,
        )
        assert not torch.isnan(maps).any(), kind
    joint = attr.attribute(tiny_inputs, target=1)
    torch.testing.assert_close(joint[:, 0], g[:, 1] / 20, rtol=0, atol=1e-12)


def test_captum_style_and_model_state(tiny_calm, tiny_inputs):
    model = tiny_calm()
    model.backbone.append(nn.BatchNorm2d(4).double())
    model.train()
    buffers = [b.clone() for b in model.buffers()]
    attr = CALMAttribution(model)
    assert isinstance(attr, LayerAttribution) and attr.layer is model.backbone
    maps = attr.attribute(tiny_inputs.requires_grad_(True), target=0)
    assert maps.grad_fn is None and model.training
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert all(p.grad is None for p in model.parameters())
    up = LayerAttribution.interpolate(maps, (8, 10), "bilinear")
    assert up.shape == (3, 1, 8, 10)


def test_errors(tiny_calm, tiny_inputs):
    attr = CALMAttribution(tiny_calm())
    with pytest.raises(TypeError, match="CALM model"):
        CALMAttribution(nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attribution_type"):
        attr.attribute(tiny_inputs, attribution_type="gradient")
    with pytest.raises(ValueError, match="subset_targets is required"):
        attr.attribute(tiny_inputs, attribution_type="subset")
    with pytest.raises(ValueError, match="counterfactual_target is required"):
        attr.attribute(tiny_inputs, attribution_type="counterfactual")
    with pytest.raises(ValueError, match="subset_targets must hold class indices"):
        attr.attribute(tiny_inputs, attribution_type="subset", subset_targets=[7])
    with pytest.raises(ValueError, match="one list per example"):
        attr.attribute(tiny_inputs, attribution_type="subset", subset_targets=[[1], [2]])
    with pytest.raises(ValueError, match="N x C bool"):
        attr.attribute(tiny_inputs, attribution_type="subset", subset_targets=torch.ones(3, 5))
    with pytest.raises(ValueError, match="target out of range"):
        attr.attribute(tiny_inputs, target=5)
    with pytest.raises(ValueError, match="target out of range"):
        attr.attribute(tiny_inputs, attribution_type="counterfactual", counterfactual_target=9)
    with pytest.raises(ValueError, match="inputs contains NaN"):
        attr.attribute(torch.full((1, 3, 4, 5), float("nan"), dtype=torch.float64))
