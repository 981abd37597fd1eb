#!/usr/bin/env python3
"""CALM_ML and CALM_EM: values from a loop-by-loop recomputation, gradients against
central finite differences on a tiny float64 model, Fisher's identity, no NaN."""

import pytest
import torch

from captum_cams.calm import calm_em_loss, calm_ml_loss

TARGET = torch.tensor([0, 3, 4])


def _factors_by_einsum(model, inputs):
    r"""g and p(z|x) in probability space with einsum (quick enough for finite differences)."""
    feats = model.backbone(inputs)
    logits = torch.einsum("ck,nkhw->nchw", model.classifier.weight[:, :, 0, 0], feats)
    g = torch.softmax(logits + model.classifier.bias.reshape(1, -1, 1, 1), dim=1)
    a = torch.einsum("k,nkhw->nhw", model.attention.weight[0, :, 0, 0], feats)
    a = a + model.attention.bias[0]
    h = torch.log1p(torch.exp(a)) if model.attention_activation == "softplus" else a.clamp(min=0)
    return g, (h / h.sum((1, 2), keepdim=True)).unsqueeze(1)


def _loss_by_hand(model, inputs, direct, kind, frozen_posterior=None):
    g, saliency = direct(model, inputs)
    joint = g[torch.arange(3), TARGET] * saliency[:, 0]  # N x h x w
    if kind == "ml":
        return -joint.flatten(1).sum(1).log().mean()
    posterior = (
        frozen_posterior if frozen_posterior is not None else joint / joint.sum((1, 2), True)
    )
    terms = torch.where(posterior > 0, posterior * joint.log(), 0.0)
    return -terms.flatten(1).sum(1).mean()


@pytest.mark.parametrize("kind", ["ml", "em"])
def test_values_match_the_loops(tiny_calm, tiny_inputs, direct, kind):
    model = tiny_calm()
    with torch.no_grad():  # the quick reference of the gradient test is the loops, too
        for fast, slow in zip(_factors_by_einsum(model, tiny_inputs), direct(model, tiny_inputs)):
            torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    model = tiny_calm()
    loss_fn = calm_ml_loss if kind == "ml" else calm_em_loss
    with torch.no_grad():
        value = loss_fn(model.components(tiny_inputs), TARGET)
        by_hand = _loss_by_hand(model, tiny_inputs, direct, kind)
        per_example = loss_fn(model.components(tiny_inputs), TARGET, reduction="none")
        total = loss_fn(model.components(tiny_inputs), TARGET, reduction="sum")
    torch.testing.assert_close(value, by_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(per_example.mean(), value, rtol=0, atol=1e-14)
    torch.testing.assert_close(total, per_example.sum(), rtol=0, atol=1e-14)
    if kind == "ml":  # the ML loss is the NLL of forward's log-probabilities
        nll = torch.nn.functional.nll_loss(model(tiny_inputs, log_probs=True), TARGET)
        torch.testing.assert_close(value, nll, rtol=0, atol=1e-12)


def _central_differences(model, objective, step=1e-6):
    grads = []
    with torch.no_grad():
        for param in model.parameters():
            grad = torch.zeros_like(param)
            flat, out = param.view(-1), grad.view(-1)
            for j in range(flat.numel()):
                keep = flat[j].item()
                flat[j] = keep + step
                up = objective().item()
                flat[j] = keep - step
                down = objective().item()
                flat[j] = keep
                out[j] = (up - down) / (2 * step)
            grads.append(grad)
    return grads


@pytest.mark.parametrize("kind", ["ml", "em"])
@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_gradients_match_finite_differences(tiny_calm, tiny_inputs, direct, kind, activation):
    model = tiny_calm(activation)
    if activation == "relu":
        with torch.no_grad():
            model.attention.bias.fill_(1.5)  # keep h away from the kink at 0
    loss_fn = calm_ml_loss if kind == "ml" else calm_em_loss
    model.zero_grad()
    loss_fn(model.components(tiny_inputs), TARGET).backward()
    autograd = [p.grad.clone() for p in model.parameters()]
    frozen = None
    if kind == "em":  # the E-step's posterior is a constant of the M-step objective
        with torch.no_grad():
            g, saliency = direct(model, tiny_inputs)
            joint = g[torch.arange(3), TARGET] * saliency[:, 0]
            frozen = joint / joint.sum((1, 2), True)
    numeric = _central_differences(
        model, lambda: _loss_by_hand(model, tiny_inputs, _factors_by_einsum, kind, frozen)
    )
    for a, n in zip(autograd, numeric):
        torch.testing.assert_close(a, n, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["ml", "em"])
def test_authors_detached_normaliser_gradient(tiny_calm, tiny_inputs, kind):
    # the authors' training divides h by sum(h).detach(): the same loss value, the
    # gradient of p(z|x) = h / S with S a constant; the paper's gradient goes
    # through S as well
    model = tiny_calm()
    loss_fn = calm_ml_loss if kind == "ml" else calm_em_loss
    paper = [p.grad for p in _grads(model, loss_fn, tiny_inputs)]
    model.detach_attention_normalizer = True
    value = loss_fn(model.components(tiny_inputs), TARGET)
    authors = [p.grad for p in _grads(model, loss_fn, tiny_inputs)]

    # direct, in probability space: h and g by einsum, S = Σ_z h_z detached
    model.zero_grad()
    feats = model.backbone(tiny_inputs)
    logits = torch.einsum("ck,nkhw->nchw", model.classifier.weight[:, :, 0, 0], feats)
    g = torch.softmax(logits + model.classifier.bias.reshape(1, -1, 1, 1), dim=1)
    a = torch.einsum("k,nkhw->nhw", model.attention.weight[0, :, 0, 0], feats)
    h = torch.log1p(torch.exp(a + model.attention.bias[0]))
    saliency = h / h.sum((1, 2), keepdim=True).detach()
    joint = g[torch.arange(3), TARGET] * saliency  # N x h x w
    if kind == "ml":
        direct_loss = -joint.flatten(1).sum(1).log().mean()
    else:
        posterior = (joint / joint.sum((1, 2), True)).detach()
        direct_loss = -(posterior * joint.log()).flatten(1).sum(1).mean()
    direct_loss.backward()
    with torch.no_grad():
        torch.testing.assert_close(value, direct_loss, rtol=0, atol=1e-12)
    for got, param in zip(authors, model.parameters()):
        torch.testing.assert_close(got, param.grad, rtol=0, atol=1e-10)
    # the attention branch's gradient differs from the paper's, branch g's does not
    assert not torch.allclose(authors[-2], paper[-2])  # attention.weight
    names = [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, authors, paper):
        if name.startswith("classifier."):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def _grads(model, loss_fn, inputs):
    model.zero_grad()
    loss_fn(model.components(inputs), TARGET).backward()
    return [p for p in model.parameters()]


def test_em_and_ml_gradients_agree_fishers_identity(tiny_calm, tiny_inputs):
    model = tiny_calm()
    grads = {}
    for name, loss_fn in (("ml", calm_ml_loss), ("em", calm_em_loss)):
        model.zero_grad()
        loss_fn(model.components(tiny_inputs), TARGET).backward()
        grads[name] = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(grads["ml"], grads["em"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with torch.no_grad():  # ... but not in value: EM adds the posterior's entropy
        parts = model.components(tiny_inputs)
        assert calm_em_loss(parts, TARGET) > calm_ml_loss(parts, TARGET)


def test_invariant_to_a_constant_on_the_class_logits(tiny_calm, tiny_inputs):
    model = tiny_calm()
    with torch.no_grad():
        before = [f(model.components(tiny_inputs), TARGET) for f in (calm_ml_loss, calm_em_loss)]
        model.classifier.bias += 3.7
        after = [f(model.components(tiny_inputs), TARGET) for f in (calm_ml_loss, calm_em_loss)]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias", [0.2, -5.0])
def test_relu_zeros_give_no_nan(tiny_calm, tiny_inputs, bias):
    # bias 0.2: some locations have h = 0 (log h = -inf); -5: h = 0 everywhere
    model = tiny_calm("relu")
    with torch.no_grad():
        model.attention.bias.fill_(bias)
        if bias < 0:
            model.attention.weight.zero_()
    for loss_fn in (calm_ml_loss, calm_em_loss):
        model.zero_grad()
        value = loss_fn(model.components(tiny_inputs), TARGET)
        value.backward()
        assert torch.isfinite(value)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_errors(tiny_calm, tiny_inputs):
    parts = tiny_calm().components(tiny_inputs)
    with pytest.raises(TypeError, match="CALMOutput"):
        calm_ml_loss(parts.log_conditional, TARGET)
    with pytest.raises(ValueError, match="reduction"):
        calm_em_loss(parts, TARGET, reduction="max")
    with pytest.raises(ValueError, match="one class per example"):
        calm_ml_loss(parts, TARGET[:2])
    with pytest.raises(ValueError, match="target out of range"):
        calm_em_loss(parts, torch.tensor([0, 1, 5]))
    with pytest.raises(TypeError, match="target"):
        calm_ml_loss(parts, TARGET.double())
    assert torch.equal(calm_ml_loss(parts, 2), calm_ml_loss(parts, torch.tensor([2, 2, 2])))
