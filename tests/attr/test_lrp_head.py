#!/usr/bin/env python3
"""A head rewritten for Captum's LRP: it computes what the head computes, Captum's LRP
through it gives the z+ / epsilon rules by hand in float64, the model's weights are
never touched, and operations without a rule are refused naming them."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import LRP
from captum.attr._utils.custom_modules import Addition_Module

from captum_cams.attr._lrp_head import (
    UnsupportedRelevanceError,
    cached_relevance_head,
    relevance_head,
)

EPS = 1e-9


class _SkipHead(nn.Module):
    r"""Conv, batch-norm, a skip sum, functional ReLU and pooling, a spatial mean,
    dropout and flatten: every kind of rewrite."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn(self.conv(a)))
        out = F.relu(out + a)
        out = F.avg_pool2d(out, 2)
        return self.fc(self.drop(out.mean((2, 3))))


def _activations(shape: tuple) -> torch.Tensor:
    generator = torch.Generator().manual_seed(4)
    return torch.rand(shape, generator=generator, dtype=torch.float64)  # post-ReLU: >= 0


def _skip_head() -> _SkipHead:
    torch.manual_seed(0)
    head = _SkipHead().double()
    with torch.no_grad():  # batch-norm statistics other than the defaults
        head.bn.running_mean.uniform_(-0.5, 0.5)
        head.bn.running_var.uniform_(0.5, 2.0)
    return head.eval()


def test_the_rewritten_head_computes_what_the_head_computes() -> None:
    head = _skip_head()
    a = _activations((2, 4, 6, 6))
    prepared = relevance_head(head)
    with torch.no_grad():
        torch.testing.assert_close(prepared.module(a), head(a), rtol=1e-12, atol=1e-14)
    kinds = [type(site) for site, _ in prepared.sites]
    assert kinds.count(Addition_Module) == 1  # the skip sum
    assert nn.AvgPool2d in kinds and nn.AdaptiveAvgPool2d in kinds  # F.avg_pool2d, mean
    assert prepared.output_site is not None and prepared.output_site is not head.fc
    names = [type(m) for m in prepared.module.modules()]
    assert nn.Dropout not in names and nn.Flatten not in names


def _two_layer_head() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()


def _stabilised(z: torch.Tensor) -> torch.Tensor:
    return z + EPS * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def test_lrp_through_the_prepared_head_equals_the_rules_by_hand() -> None:
    head = _two_layer_head()
    a = _activations((2, 6))
    target = [0, 2]
    prepared = relevance_head(head)
    with prepared.rules_attached(epsilon=EPS) as module:
        relevance = LRP(module).attribute(a.clone().requires_grad_(), target=target)
    first, last = head[0], head[2]
    with torch.no_grad():
        for row, t in enumerate(target):
            h = torch.relu(first.weight @ a[row] + first.bias)
            y = last.weight @ h + last.bias
            # epsilon at the output, z+ (bias left out) at the hidden layer
            r_h = h * last.weight[t] * (y[t] / _stabilised(y[t]))
            w_plus = first.weight.clamp(min=0)
            r_a = a[row] * (w_plus.T @ (r_h / _stabilised(w_plus @ a[row])))
            torch.testing.assert_close(relevance[row], r_a, rtol=1e-7, atol=1e-12)
            # conserved: the logit less the output bias's share
            torch.testing.assert_close(relevance[row].sum(), y[t] - last.bias[t], rtol=1e-7, atol=0)


def test_the_model_is_never_written_and_the_rules_leave_with_the_call() -> None:
    head = _two_layer_head()
    parameters = dict(head.named_parameters())
    before = {name: p.detach().clone() for name, p in parameters.items()}
    prepared = relevance_head(head)
    with prepared.rules_attached(epsilon=EPS) as module:
        once = LRP(module).attribute(_activations((2, 6)).requires_grad_(), target=1).detach()
    assert dict(head.named_parameters()) == parameters  # the same Parameter objects
    for name, p in head.named_parameters():
        assert torch.equal(p, before[name]), name
    assert all(not hasattr(site, "rule") for site, _ in prepared.sites)
    # the model's new weights are read at the next call: the output layer doubled
    # doubles the relevance (the epsilon rule's ratio y / y is unchanged)
    with torch.no_grad():
        head[2].weight.mul_(2.0)
        head[2].bias.mul_(2.0)
    with prepared.rules_attached(epsilon=EPS) as module:
        twice = LRP(module).attribute(_activations((2, 6)).requires_grad_(), target=1)
    torch.testing.assert_close(twice.detach(), 2 * once, rtol=1e-7, atol=1e-12)


def test_a_module_called_at_two_sites_gets_a_copy_per_site() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.fc(a)))

    torch.manual_seed(2)
    head = Twice().double().eval()
    prepared = relevance_head(head)
    copies = [site for site, original in prepared.sites if original is head.fc]
    assert len(copies) == 2 and copies[0] is not copies[1]
    a = _activations((2, 3))
    with torch.no_grad():
        torch.testing.assert_close(prepared.module(a), head(a))


def test_the_cache_is_kept_until_a_module_is_replaced() -> None:
    head = _two_layer_head()
    first = cached_relevance_head(head)
    assert cached_relevance_head(head) is first
    head[1] = nn.ReLU()  # the same kind of module: the same structure
    head[2] = nn.Linear(5, 3).double()
    rebuilt = cached_relevance_head(head)
    assert rebuilt is not first
    assert any(original is head[2] for _, original in rebuilt.sites)


class _Gated(nn.Module):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * torch.sigmoid(a)


@pytest.mark.parametrize(
    "head, message",
    [
        (nn.Sequential(nn.Linear(3, 3), nn.Sigmoid()).eval(), "holds Sigmoid"),
        (nn.Sequential(nn.BatchNorm2d(3)).train(), "is in training mode"),
        (nn.Sequential(nn.MaxPool2d(2, return_indices=True)).eval(), "returns indices"),
        (_Gated(), "which has no relevance rule"),
    ],
    ids=["sigmoid", "training batch-norm", "max-pool indices", "product"],
)
def test_operations_without_a_rule_are_refused_naming_them(head: nn.Module, message: str) -> None:
    with pytest.raises(UnsupportedRelevanceError, match=message):
        relevance_head(head)
