#!/usr/bin/env python3
"""A head rewritten for DeepLIFT: one out-of-place module per non-linear call site, the
same outputs, completeness of Captum's DeepLift through it (which the head as written
breaks), affine heads recognised, and what has no exact rule refused naming it."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import DeepLift

from captum_cams.attr._deeplift_head import (
    UnsupportedNonLinearityError,
    cached_deeplift_head,
    check_eval_mode,
    deeplift_head,
)


class _FunctionalHead(nn.Module):
    r"""Non-linearities Captum's hooks miss: functional calls, a method call and one
    in-place ReLU module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 6)
        self.fc3 = nn.Linear(6, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.fc1(a))
        h = F.leaky_relu(self.fc2(h), 0.2) + torch.sigmoid(h)
        h = self.relu(h.relu() - 0.1)
        return self.fc3(h)


def _head() -> _FunctionalHead:
    torch.manual_seed(0)
    return _FunctionalHead().double().eval()


def _activations() -> torch.Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_every_non_linear_call_site_becomes_its_own_out_of_place_module() -> None:
    head = _head()
    a = _activations()
    prepared, is_affine = deeplift_head(head)
    assert not is_affine
    sites = [m for name, m in prepared.named_modules() if name.startswith("deeplift_site_")]
    kinds = sorted(type(m).__name__ for m in sites)
    assert kinds == ["LeakyReLU", "ReLU", "ReLU", "ReLU", "Sigmoid"]
    assert len({id(m) for m in sites}) == 5 and not any(getattr(m, "inplace", False) for m in sites)
    leaky = next(m for m in sites if isinstance(m, nn.LeakyReLU))
    assert leaky.negative_slope == 0.2
    with torch.no_grad():
        torch.testing.assert_close(prepared(a), head(a), rtol=0, atol=0)
    assert {id(p) for p in prepared.parameters()} <= {id(p) for p in head.parameters()}


def test_deeplift_through_the_rewrite_is_complete_where_the_head_as_written_is_not() -> None:
    head = _head()
    a = _activations()
    zero = torch.zeros_like(a)
    target = [0, 1, 2]
    prepared, _ = deeplift_head(head)
    with torch.no_grad():
        expected = (head(a) - head(zero))[torch.arange(3), target]
    ours = DeepLift(prepared).attribute(a.requires_grad_(), baselines=zero, target=target)
    torch.testing.assert_close(ours.sum(dim=1), expected, rtol=1e-10, atol=1e-12)
    # the head as written (its twice-called ReLU taken out, which Captum refuses):
    # Captum's hooks miss the functional calls, which get plain gradients
    unprepared = _head()
    unprepared.relu = nn.Identity()
    with torch.no_grad():
        unprepared_expected = (unprepared(a) - unprepared(zero))[torch.arange(3), target]
    raw = DeepLift(unprepared).attribute(a, baselines=zero, target=target).detach()
    assert (raw.sum(dim=1) - unprepared_expected).abs().max() > 1e-3


class _Affine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 4)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.bn(self.conv(a)) * 0.5, 1)
        return self.fc(pooled.view(pooled.size(0), -1)) - 1.0


def test_an_affine_head_is_recognised_and_unchanged() -> None:
    torch.manual_seed(2)
    head = _Affine().double().eval()
    prepared, is_affine = deeplift_head(head)
    assert is_affine
    a = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(prepared(a), head(a), rtol=0, atol=0)


class _Gate(nn.Module):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * a.mean(dim=1, keepdim=True)


class _TrainingDropout(nn.Module):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return F.dropout(a, 0.5, True)


@pytest.mark.parametrize(
    "head, message",
    [
        (_Gate(), "multiplies .or divides. two activation-dependent tensors"),
        (nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1)), "holds Softmax"),
        (nn.Sequential(nn.LayerNorm(3)), "fixed_layer_norm=True"),
        (nn.Sequential(nn.LayerNorm(3), nn.ReLU()), "exact only where the rest"),
        (_TrainingDropout(), "runs in training mode"),
        (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), "returns indices"),
    ],
    ids=["product", "softmax", "layer norm", "layer norm and relu", "dropout", "indices"],
)
def test_operations_without_an_exact_rule_are_refused_naming_them(
    head: nn.Module, message: str
) -> None:
    fixed = "rest" in message
    with pytest.raises(UnsupportedNonLinearityError, match=message):
        deeplift_head(head.eval(), fixed_layer_norm=fixed)


def test_training_mode_modules_are_named() -> None:
    head = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.1))
    check_eval_mode(head.eval())
    with pytest.raises(ValueError, match="Dropout '1' is in training mode"):
        check_eval_mode(head.train())


def test_the_cache_is_per_head_and_option_until_a_module_is_replaced() -> None:
    head = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 2)).double().eval()
    fixed, is_affine = cached_deeplift_head(head, fixed_layer_norm=True)
    assert is_affine and cached_deeplift_head(head, fixed_layer_norm=True)[0] is fixed
    with pytest.raises(UnsupportedNonLinearityError):  # errors are not cached
        cached_deeplift_head(head)
    head[0] = nn.Linear(3, 3).double()
    assert cached_deeplift_head(head, fixed_layer_norm=True)[0] is not fixed
